"""In-memory repositories behind FakeGitHub: commits, refs, statuses, checks, deployments.

Kept apart from the HTTP layer (github_api.py) so the git-graph logic and GitHub's
validation rules are plain functions a reader can check against the REST docs.
Errors GitHub would answer with are raised as `ApiError`; the HTTP layer renders
them with GitHub's error shape.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

JSON = dict[str, Any]
DOCS = "https://docs.github.com/rest"

COMMIT_STATES = ("error", "failure", "pending", "success")
CHECK_STATUSES = ("queued", "in_progress", "completed", "waiting", "requested", "pending")
CHECK_CONCLUSIONS = (
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
    "startup_failure",
)
DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")


class ApiError(Exception):
    """An answer GitHub gives instead of the resource: status plus its JSON error body."""

    def __init__(self, status: int, message: str, errors: list[JSON] | None = None) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.body: JSON = {"message": message, "documentation_url": DOCS, "status": str(status)}
        if errors is not None:
            self.body["errors"] = errors


def not_found() -> ApiError:
    # PyGithub only maps 404 to UnknownObjectException when the message says "not found".
    return ApiError(404, "Not Found")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Commit:
    sha: str
    message: str
    author: str
    email: str
    date: datetime
    parents: list[str]
    login: str | None = None  # GitHub user of the author; None renders as `"author": null`


@dataclass
class Status:
    id: int
    state: str
    context: str
    description: str | None
    target_url: str | None
    created_at: datetime


@dataclass
class CheckRun:
    id: int
    name: str
    status: str
    conclusion: str | None
    started_at: datetime
    completed_at: datetime | None


@dataclass
class DeploymentStatus:
    id: int
    deployment_id: int
    state: str
    description: str
    environment: str
    log_url: str
    environment_url: str
    created_at: datetime


@dataclass
class Deployment:
    id: int
    sha: str
    ref: str
    task: str
    payload: Any
    environment: str
    original_environment: str
    description: str | None
    transient_environment: bool
    production_environment: bool
    auto_merge: bool
    required_contexts: list[str] | None
    created_at: datetime
    updated_at: datetime
    statuses: list[DeploymentStatus] = field(default_factory=list)  # oldest first


@dataclass
class Repo:
    id: int
    full_name: str
    default_branch: str
    # Insertion order is a topological order (parents must exist first); compare relies on it.
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # "heads/main" / "tags/v1" -> sha
    statuses: dict[str, list[Status]] = field(default_factory=dict)
    check_runs: dict[str, list[CheckRun]] = field(default_factory=dict)
    deployments: dict[int, Deployment] = field(default_factory=dict)


@dataclass
class Comparison:
    status: str
    ahead_by: int
    behind_by: int
    merge_base: str
    commits: list[Commit]  # in head but not in base, oldest first (as GitHub lists them)


class GitHubState:
    """The seedable model. FakeGitHub inherits it, so tests seed through the fake itself."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self._ids = itertools.count(1)  # GitHub ids are unique across object kinds too
        self._clock = datetime(2024, 1, 1, tzinfo=UTC)  # deterministic default commit dates

    # -- seeding -------------------------------------------------------------------------

    def add_repo(self, full_name: str, default_branch: str = "main") -> Repo:
        if full_name.count("/") != 1:
            raise ValueError(f"repo must be 'owner/name', got {full_name!r}")
        repo = Repo(id=next(self._ids), full_name=full_name, default_branch=default_branch)
        self.repos[full_name.lower()] = repo  # GitHub treats owner/name case-insensitively
        return repo

    def repo(self, full_name: str) -> Repo:
        try:
            return self.repos[full_name.lower()]
        except KeyError:
            raise KeyError(f"unknown repo {full_name!r}; call add_repo first") from None

    def add_commit(
        self,
        repo: str,
        sha: str | None = None,
        *,
        message: str = "commit",
        author: str = "Dev Eloper",
        email: str = "dev@example.com",
        login: str | None = None,
        date: datetime | None = None,
        parents: list[str] | None = None,
        branch: str | None = None,
    ) -> str:
        """Add a commit and return its sha. parents=None means "on top of `branch`'s head"
        (default branch when omitted), and that branch is moved to the new commit."""
        r = self.repo(repo)
        moves = branch or (r.default_branch if parents is None else None)
        if parents is None:
            head = r.refs.get(f"heads/{moves}")
            parents = [head] if head else []
        for p in parents:
            if p not in r.commits:
                raise ValueError(f"parent {p} is not a commit of {repo}")
        seq = len(r.commits)
        sha = (
            sha
            or hashlib.sha1(  # deterministic so failures are reproducible
                f"{r.full_name}:{seq}:{message}".encode(), usedforsecurity=False
            ).hexdigest()
        )
        if date is None:
            date = self._clock + timedelta(minutes=seq)
        r.commits[sha] = Commit(sha, message, author, email, date, list(parents), login)
        if moves:
            r.refs[f"heads/{moves}"] = sha
        return sha

    def set_ref(self, repo: str, ref: str, sha: str) -> None:
        """Create or move "heads/<branch>" or "tags/<tag>" (lightweight tags only)."""
        r = self.repo(repo)
        ref = ref.removeprefix("refs/")
        if not ref.startswith(("heads/", "tags/")):
            raise ValueError(f"ref must start with heads/ or tags/, got {ref!r}")
        if sha not in r.commits:
            raise ValueError(f"{sha} is not a commit of {repo}")
        r.refs[ref] = sha

    def delete_ref(self, repo: str, ref: str) -> None:
        self.repo(repo).refs.pop(ref.removeprefix("refs/"), None)

    def set_status(
        self,
        repo: str,
        sha: str,
        state: str,
        context: str = "ci",
        *,
        description: str | None = None,
        target_url: str | None = None,
    ) -> None:
        """Append a commit status; the combined status uses the newest one per context."""
        if state not in COMMIT_STATES:
            raise ValueError(f"state must be one of {COMMIT_STATES}")
        r = self.repo(repo)
        sha = self._known(r, sha)
        r.statuses.setdefault(sha, []).append(
            Status(next(self._ids), state, context, description, target_url, utcnow())
        )

    def add_check_run(
        self,
        repo: str,
        sha: str,
        name: str,
        status: str = "completed",
        conclusion: str | None = "success",
    ) -> int:
        """Add a check run (a re-run is just a newer run with the same name); returns its id."""
        if status not in CHECK_STATUSES:
            raise ValueError(f"status must be one of {CHECK_STATUSES}")
        if status == "completed" and conclusion not in CHECK_CONCLUSIONS:
            raise ValueError(f"a completed run needs a conclusion from {CHECK_CONCLUSIONS}")
        if status != "completed":
            conclusion = None  # GitHub only reports a conclusion once a run completes
        r = self.repo(repo)
        sha = self._known(r, sha)
        now = utcnow()
        run = CheckRun(
            next(self._ids), name, status, conclusion, now, now if status == "completed" else None
        )
        r.check_runs.setdefault(sha, []).append(run)
        return run.id

    def linear_history(
        self,
        repo: str,
        n: int,
        *,
        tag_every: int | None = None,
        tag_prefix: str = "v",
        branch: str | None = None,
        status: str | None = None,
    ) -> list[str]:
        """n commits on top of `branch` (default branch). With tag_every=k, every k-th new
        commit is tagged v1, v2, ... (continuing after existing tags of that prefix).
        With status, each commit gets a "ci" status in that state."""
        r = self.repo(repo)
        branch = branch or r.default_branch
        tag_no = sum(1 for ref in r.refs if ref.startswith(f"tags/{tag_prefix}"))
        shas = []
        for i in range(1, n + 1):
            sha = self.add_commit(repo, message=f"change {len(r.commits) + 1}", branch=branch)
            if tag_every and i % tag_every == 0:
                tag_no += 1
                self.set_ref(repo, f"tags/{tag_prefix}{tag_no}", sha)
            if status:
                self.set_status(repo, sha, status, "ci")
            shas.append(sha)
        return shas

    # -- reading -------------------------------------------------------------------------

    def deployments(self, repo: str) -> list[Deployment]:
        return list(self.repo(repo).deployments.values())

    def deployment_statuses(self, repo: str, deployment_id: int) -> list[DeploymentStatus]:
        return list(self.repo(repo).deployments[deployment_id].statuses)

    def resolve(self, r: Repo, ref: str) -> str | None:
        """sha, "heads/x", "tags/x", or a bare name (tags first, as `git rev-parse` does)."""
        if ref in r.commits:
            return ref
        name = ref.removeprefix("refs/")
        for candidate in (name, f"tags/{name}", f"heads/{name}"):
            if candidate in r.refs:
                return r.refs[candidate]
        if len(ref) >= 7 and all(c in "0123456789abcdef" for c in ref):
            hits = [sha for sha in r.commits if sha.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
        return None

    def ancestors(self, r: Repo, sha: str) -> set[str]:
        seen: set[str] = set()
        todo = [sha]
        while todo:
            cur = todo.pop()
            if cur not in seen:
                seen.add(cur)
                todo.extend(r.commits[cur].parents)
        return seen

    def compare(self, r: Repo, base: str, head: str) -> Comparison:
        base_anc, head_anc = self.ancestors(r, base), self.ancestors(r, head)
        common = base_anc & head_anc
        if not common:
            raise ApiError(404, f"No common ancestor between {base} and {head}.")
        # The newest common commit in topological order has no common descendant: a merge base.
        merge_base = [sha for sha in r.commits if sha in common][-1]
        ahead = [c for sha, c in r.commits.items() if sha in head_anc and sha not in base_anc]
        behind = len(base_anc - head_anc)
        if base == head:
            status = "identical"
        elif not behind:
            status = "ahead"
        else:
            status = "behind" if not ahead else "diverged"
        return Comparison(status, len(ahead), behind, merge_base, ahead)

    def latest_statuses(self, r: Repo, sha: str) -> list[Status]:
        latest: dict[str, Status] = {}
        for s in r.statuses.get(sha, []):
            latest[s.context] = s
        return list(latest.values())

    def combined_state(self, statuses: list[Status]) -> str:
        # Rules from GitHub's "Get the combined status for a specific reference" docs.
        states = {s.state for s in statuses}
        if states & {"error", "failure"}:
            return "failure"
        if not states or "pending" in states:
            return "pending"
        return "success"

    # -- deployments (validation mirrors GitHub's answers) -------------------------------

    def create_deployment(self, r: Repo, body: Any) -> Deployment:
        body = _object(body)
        _check_types(
            body,
            ref=str,
            task=str,
            auto_merge=bool,
            required_contexts=list,
            payload=(dict, str),
            environment=str,
            description=(str, type(None)),
            transient_environment=bool,
            production_environment=bool,
        )
        if "ref" not in body:
            raise ApiError(422, 'Invalid request.\n\n"ref" wasn\'t supplied.')
        ref: str = body["ref"]
        sha = self.resolve(r, ref)
        if sha is None:
            raise ApiError(422, f"No ref found for: {ref}")
        default_head = r.refs.get(f"heads/{r.default_branch}")
        if (
            body.get("auto_merge", True)
            and default_head
            and default_head not in self.ancestors(r, sha)
        ):
            # Real GitHub would try to merge the default branch into `ref` (202); the fake
            # always refuses, as GitHub does for a tag, so a bot must send auto_merge=False.
            raise ApiError(409, f"Conflict merging {r.default_branch} into {ref}.")
        required = body.get("required_contexts")
        latest = {s.context: s.state for s in self.latest_statuses(r, sha)}
        wanted = list(latest) if required is None else required  # omitted = every context
        failed = [
            {"context": c, "state": latest.get(c, "pending")}
            for c in wanted
            if latest.get(c) != "success"
        ]
        if failed:
            raise ApiError(
                409,
                f"Conflict: Commit status checks failed for {ref}.",
                [
                    {
                        "contexts": failed,
                        "resource": "Deployment",
                        "field": "required_contexts",
                        "code": "invalid",
                    }
                ],
            )
        payload = body.get("payload", {})
        if isinstance(payload, str):  # GitHub accepts the payload as a JSON text too
            with contextlib.suppress(ValueError):
                payload = json.loads(payload) if payload else {}
        env = body.get("environment", "production")
        now = utcnow()
        dep = Deployment(
            id=next(self._ids),
            sha=sha,
            ref=ref,
            task=body.get("task", "deploy"),
            payload=payload,
            environment=env,
            original_environment=env,
            description=body.get("description", ""),
            transient_environment=body.get("transient_environment", False),
            production_environment=body.get("production_environment", env == "production"),
            auto_merge=body.get("auto_merge", True),
            required_contexts=required,
            created_at=now,
            updated_at=now,
        )
        r.deployments[dep.id] = dep
        return dep

    def create_deployment_status(self, r: Repo, dep: Deployment, body: Any) -> DeploymentStatus:
        body = _object(body)
        _check_types(
            body,
            state=str,
            log_url=str,
            target_url=str,
            description=str,
            environment=str,
            environment_url=str,
            auto_inactive=bool,
        )
        state = body.get("state")
        if state not in DEPLOYMENT_STATES:
            raise ApiError(
                422,
                "Validation Failed",
                [
                    {
                        "resource": "DeploymentStatus",
                        "field": "state",
                        "code": "invalid",
                        "value": state,
                    }
                ],
            )
        if "environment" in body:  # a status may move the deployment to another environment
            dep.environment = body["environment"]
        # log_url replaces target_url; setting either sets both, as GitHub documents.
        log_url = body.get("log_url", body.get("target_url", ""))
        status = DeploymentStatus(
            next(self._ids),
            dep.id,
            state,
            body.get("description", ""),
            dep.environment,
            log_url,
            body.get("environment_url", ""),
            utcnow(),
        )
        dep.statuses.append(status)
        dep.updated_at = status.created_at
        if state == "success" and body.get("auto_inactive", True):
            # GitHub: prior non-transient, non-production deployments to the same environment
            # become inactive. Production ones do not: the bot must retire those itself.
            for other in r.deployments.values():
                if (
                    other.id < dep.id
                    and other.environment == dep.environment
                    and not other.transient_environment
                    and not other.production_environment
                    and other.statuses
                    and other.statuses[-1].state == "success"
                ):
                    other.statuses.append(
                        DeploymentStatus(
                            next(self._ids),
                            other.id,
                            "inactive",
                            "",
                            other.environment,
                            "",
                            "",
                            status.created_at,
                        )
                    )
        return status

    def _known(self, r: Repo, ref: str) -> str:
        sha = self.resolve(r, ref)
        if sha is None:
            raise ValueError(f"{ref} is not a commit or ref of {r.full_name}")
        return sha


def _object(body: Any) -> JSON:
    if not isinstance(body, dict):
        raise ApiError(400, "Problems parsing JSON")
    return body


def _check_types(body: JSON, **kinds: type | tuple[type, ...]) -> None:
    """GitHub validates request bodies against a JSON schema and names the bad property."""
    for name, kind in kinds.items():
        value = body.get(name)
        if name not in body:
            continue
        # Contexts must be strings: GitHub rejects the whole request otherwise.
        if not isinstance(value, kind) or (
            isinstance(value, list) and not all(isinstance(v, str) for v in value)
        ):
            raise ApiError(
                422,
                f"Invalid request.\n\nFor 'properties/{name}', {json.dumps(value)} is not valid.",
            )
