"""GitHub for the deploy domain: resolve refs, read CI, list changes, record Deployments.

The shape bot.deploys.ports.SourceControl asks for (this package imports nothing from
bot/). Built on PyGithub, which is synchronous: every PyGithub call, attribute reads on
its lazy objects included, runs in a worker thread, never on the event loop. Failures
surface as GitHubError with a kind the caller can act on; PyGithub, requests and urllib3
exceptions never escape.

Retries: PyGithub's default Retry repeats POSTs too, so a lost answer to
POST /deployments creates a second deployment. Here the library retries only GETs;
create_deployment is made idempotent by the `chatops_id` in its payload instead.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import requests
import urllib3
from github import Auth, Consts, Github, GithubException, GithubRetry, RateLimitExceededException
from github.GithubObject import NotSet
from github.Repository import Repository

T = TypeVar("T")
ErrorKind = Literal["not_found", "auth", "invalid", "conflict", "unavailable"]
CheckState = Literal["success", "failure", "pending", "none"]

_KINDS: dict[int, ErrorKind] = {401: "auth", 403: "auth", 404: "not_found", 409: "conflict"}
_GREEN_CONCLUSIONS = frozenset({"success", "neutral", "skipped"})
_PAGE = 100  # GitHub's largest page for statuses, check runs and deployments
_COMPARE_PAGE = 250  # GitHub's default compare page: most changelogs need one request
_STATUS_DESCRIPTION_MAX = 140  # GitHub rejects longer deployment-status descriptions
# A primary rate limit can reset an hour away; holding a chat command that long is worse
# than answering "GitHub is unavailable, try later".
_MAX_RATE_LIMIT_WAIT = 60.0


@dataclass(frozen=True)
class Commit:
    sha: str
    message: str  # first line only
    author: str  # git author name
    date: datetime | None  # aware, UTC
    url: str | None  # the commit's web page


@dataclass(frozen=True)
class Checks:
    state: CheckState
    failing: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)


class GitHubError(Exception):
    def __init__(self, kind: ErrorKind, status: int | None, message: str) -> None:
        # Callers show str(exc) in chat: lead with what GitHub said.
        answer = f"HTTP {status}" if status else "no answer"
        super().__init__(f"{message} (GitHub {kind}, {answer})")
        self.kind: ErrorKind = kind
        self.status = status
        self.message = message


class GitHubClient:
    def __init__(
        self,
        token: str | None,
        base_url: str = "https://api.github.com",
        *,
        timeout: float = 10,
        gentle: bool = True,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        """gentle keeps PyGithub's pauses between requests (GitHub asks integrations to
        serialise writes); tests turn it off. A GET is retried `retries` times on 5xx,
        timeouts and connection errors, sleeping 0, 2*backoff, 4*backoff... in between."""
        retry = GithubRetry(
            total=retries, backoff_factor=backoff, backoff_max=10,
            # Only safe-to-repeat methods. POST is left out: a POST whose answer was lost
            # has already happened. A connection that could not be opened is still retried
            # for any method (urllib3's connect count), as nothing was sent.
            allowed_methods=frozenset({"GET", "HEAD"}),
            status_forcelist=list(range(500, 600)),  # GithubRetry adds 403 for rate limits
            raise_on_status=False,  # hand back the last 5xx, not a RetryError: keeps its status
            max_rate_limit_wait=_MAX_RATE_LIMIT_WAIT,
        )
        self._gh = Github(
            base_url=base_url,
            auth=Auth.Token(token) if token else None,
            timeout=max(1, math.ceil(timeout)),  # PyGithub accepts whole seconds only
            user_agent="chatops-bot",
            retry=retry,
            per_page=_PAGE,
            lazy=True,  # objects are URLs until read: one request per question, not two
            seconds_between_requests=Consts.DEFAULT_SECONDS_BETWEEN_REQUESTS if gentle else None,
            seconds_between_writes=Consts.DEFAULT_SECONDS_BETWEEN_WRITES if gentle else None,
        )

    async def resolve(self, repo: str, ref: str) -> Commit | None:
        """A tag, branch or (short) sha; None when GitHub knows no such ref. A repository
        GitHub will not show this token is a 404 there too, so it also reads as None."""
        return await self._run(lambda: self._resolve(repo, ref))

    async def checks(self, repo: str, sha: str) -> Checks:
        """Newest status per context plus newest check run per name. A completed run whose
        conclusion is not success/neutral/skipped (stale, startup_failure, ...) fails."""

        def work() -> Checks:
            failing: list[str] = []
            pending: list[str] = []
            green = 0
            base = f"/repos/{repo}/commits/{quote(sha, safe='')}"
            # The combined status endpoint already keeps the newest status per context;
            # PyGithub's get_combined_status reads only its first page, so page it here.
            for status in self._pages(f"{base}/status", "statuses"):
                state, context = status.get("state"), str(status.get("context"))
                if state == "success":
                    green += 1
                elif state == "pending":
                    pending.append(context)
                else:  # failure, error
                    failing.append(context)
            # filter=latest, and oldest first by id so a re-run replaces the earlier run.
            listed = self._pages(f"{base}/check-runs", "check_runs", {"filter": "latest"})
            runs = {str(r.get("name")): r for r in sorted(listed, key=lambda r: r.get("id", 0))}
            for name, run in runs.items():
                if run.get("status") != "completed":  # queued, in_progress, waiting, ...
                    pending.append(name)
                elif run.get("conclusion") in _GREEN_CONCLUSIONS:
                    green += 1
                else:  # failure, cancelled, timed_out, action_required, stale, ...
                    failing.append(name)
            verdict: CheckState = "failure" if failing else "pending" if pending else "success"
            return Checks(verdict if failing or pending or green else "none", failing, pending)

        return await self._run(work)

    async def compare(
        self, repo: str, base: str, head: str, limit: int
    ) -> tuple[list[Commit], int]:
        """Commits in head and not in base, newest first, at most `limit`, and how many
        there are. Head behind base (a rollback) gives ([], 0): swap the arguments to list
        what a rollback removes. When base is unknown to GitHub (never pushed, deleted, or
        history rewritten so there is no common ancestor) the changes cannot be known; the
        answer is then ([head], 1), i.e. "this is what would be deployed". An unknown head
        raises GitHubError("not_found")."""

        def work() -> tuple[list[Commit], int]:
            url = f"/repos/{repo}/compare/{quote(base, safe='')}...{quote(head, safe='')}"
            try:
                first = _sync(lambda: self._get(url, per_page=_COMPARE_PAGE, page=1))
            except GitHubError as exc:
                if exc.kind != "not_found":
                    raise
                tip = self._resolve(repo, head)
                if tip is None:
                    raise
                return [tip], 1
            total = int(first.get("total_commits", 0))
            # GitHub lists oldest first and pages by _COMPARE_PAGE: keep absolute indexes
            # and fetch only the pages holding the newest `limit` commits.
            found = dict(enumerate(first.get("commits", [])))
            oldest = max(total - max(limit, 0), 0)
            for page in range(oldest // _COMPARE_PAGE + 1, (total - 1) // _COMPARE_PAGE + 2):
                if page > 1 and oldest < total:
                    items = self._get(url, per_page=_COMPARE_PAGE, page=page).get("commits", [])
                    found |= {(page - 1) * _COMPARE_PAGE + i: c for i, c in enumerate(items)}
            newest = [_commit(found[i]) for i in range(total - 1, oldest - 1, -1) if i in found]
            return newest, total

        return await self._run(work)

    async def create_deployment(
        self, repo: str, *, ref: str, environment: str, description: str,
        payload: dict[str, Any], production: bool, transient: bool = False,
    ) -> int:
        """Create (once) a deployment of `ref`. payload["chatops_id"] names the attempt: a
        deployment of this ref and environment already carrying it is returned instead, so
        a caller may repeat the call after any failure. (No chatops_id: no such guarantee.)"""
        chatops_id = payload.get("chatops_id")

        def existing() -> int | None:
            if chatops_id is None:
                return None
            # Newest first: a repeat follows its first attempt closely, so the first page
            # is where it would be.
            found = self._repo(repo).get_deployments(ref=ref, environment=environment)
            for dep in itertools.islice(found, _PAGE):
                if isinstance(dep.payload, dict) and dep.payload.get("chatops_id") == chatops_id:
                    return int(dep.id)
            return None

        def create() -> int:
            dep = self._repo(repo).create_deployment(
                ref=ref, task="deploy", payload=payload, environment=environment,
                description=description, transient_environment=transient,
                production_environment=production,
                auto_merge=False,  # deploy exactly this ref; never merge the default branch in
                required_contexts=[],  # the bot gates on checks() itself, with its own policy
            )
            return int(dep.id)

        def work() -> int:
            if (known := existing()) is not None:
                return known
            try:
                return _sync(create)
            except GitHubError as exc:
                # A 5xx, timeout or dropped connection may come after GitHub created it.
                if exc.kind == "unavailable" and (known := existing()) is not None:
                    return known
                raise

        return await self._run(work)

    async def set_deployment_status(
        self, repo: str, deployment_id: int, state: str, *, description: str = "",
        log_url: str | None = None, environment_url: str | None = None,
    ) -> None:
        """state: queued, in_progress, success, failure, error or inactive."""

        def work() -> None:
            # Lazy: get_deployment builds the URL only, so this is a single POST.
            self._repo(repo).get_deployment(deployment_id).create_status(
                state,
                target_url=NotSet if log_url is None else log_url,  # GitHub copies it to log_url
                description=description[:_STATUS_DESCRIPTION_MAX],
                environment_url=NotSet if environment_url is None else environment_url,
            )

        await self._run(work)

    async def close(self) -> None:
        await asyncio.to_thread(self._gh.close)

    # -- helpers (all run in worker threads) --------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        # PyGithub blocks; on the loop it would stall every other chat command.
        return await asyncio.to_thread(_sync, fn)

    def _repo(self, name: str) -> Repository:
        return self._gh.get_repo(name)  # lazy: no request

    def _resolve(self, repo: str, ref: str) -> Commit | None:
        try:
            return _commit(_sync(lambda: self._repo(repo).get_commit(ref).raw_data))
        except GitHubError as exc:
            # GitHub answers an unknown ref on /commits/{ref} with 422, not 404.
            if exc.kind == "not_found" or (
                exc.kind == "invalid" and "no commit found" in exc.message.lower()
            ):
                return None
            raise

    def _get(self, url: str, **params: Any) -> dict[str, Any]:
        _, data = self._gh.requester.requestJsonAndCheck("GET", url, parameters=params)
        return data if isinstance(data, dict) else {}

    def _pages(
        self, url: str, key: str, params: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Items of a `{"total_count": n, key: [...]}` listing, every page."""
        seen = 0
        for page in itertools.count(1):
            data = self._get(url, **(params or {}), per_page=_PAGE, page=page)
            items = data.get(key) or []
            yield from items
            seen += len(items)
            if not items or seen >= int(data.get("total_count", 0)):
                return


def _sync(fn: Callable[[], T]) -> T:
    """Call fn, turning every library failure into a GitHubError."""
    try:
        return fn()
    except GithubException as exc:
        raise _from_github(exc) from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        # Connection refused/reset, timeouts, RetryError: GitHub did not answer usefully.
        raise GitHubError("unavailable", None, f"{type(exc).__name__}: {exc}") from None


def _from_github(exc: GithubException) -> GitHubError:
    status = exc.status if isinstance(exc.status, int) else None
    data = exc.data
    message = str(data.get("message", data)) if isinstance(data, dict) else str(data or exc)
    # Rate limited or failing: the same request may work later. Other refusals are final.
    later = isinstance(exc, RateLimitExceededException) or status in (None, 429)
    if later or (status or 0) >= 500:
        return GitHubError("unavailable", status, message)
    return GitHubError(_KINDS.get(status or 0, "invalid"), status, message)


def _commit(data: dict[str, Any]) -> Commit:
    git = data.get("commit") or {}
    who = git.get("author") or {}
    lines = str(git.get("message") or "").splitlines()
    return Commit(
        sha=str(data.get("sha", "")),
        message=lines[0] if lines else "",
        author=str(who.get("name") or (data.get("author") or {}).get("login") or ""),
        date=_parse_time(who.get("date")),
        url=data.get("html_url"),
    )


def _parse_time(value: Any) -> datetime | None:
    try:  # GitHub sends "2024-01-01T00:00:00Z"
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed.replace(tzinfo=parsed.tzinfo or UTC).astimezone(UTC)
