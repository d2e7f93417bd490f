"""A fake GitHub REST API (v3) that the real PyGithub client can talk to.

    async with FakeGitHub() as gh:
        gh.add_repo("acme/api")
        gh.linear_history("acme/api", 6, tag_every=2)      # tags v1..v3
        client = github.Github(base_url=gh.base_url, auth=github.Auth.Token("t"),
                               seconds_between_requests=None, seconds_between_writes=None)
        repo = await asyncio.to_thread(client.get_repo, "acme/api")

PyGithub is synchronous and this server runs on the test's event loop, so every PyGithub
call must go through asyncio.to_thread (or a worker thread): a blocking call made on the
loop itself would wait forever for a server that can no longer run.

Only the endpoints chatops-bot's deploy flow uses are served; anything else is a 404, which
is also what GitHub answers for paths it does not know. The model and GitHub's validation
rules live in github_state.py; this module is routing, JSON shapes, pagination, auth,
request recording and fault injection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import unquote, urlencode

from aiohttp import web

from .github_state import (
    JSON,
    ApiError,
    CheckRun,
    Commit,
    Deployment,
    DeploymentStatus,
    GitHubState,
    Repo,
    Status,
    iso,
    not_found,
)

T = TypeVar("T")
_REASONS = {500: "Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
_REPO = r"^/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)"
_Handler = Callable[["FakeGitHub", "_Call"], JSON | list[Any] | web.Response]


@dataclass
class RecordedRequest:
    method: str
    path: str  # percent-decoded, without the query string
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # decoded JSON; the raw text if it was not JSON; None if empty
    time: float  # time.monotonic() when the request arrived
    status: int = 0  # what the fake answered (injected faults included)


@dataclass
class _Rule:
    path: str
    method: str  # "" matches any method
    remaining: int | None  # None: until heal()
    status: int = 0
    seconds: float = 0.0
    after: bool = False

    def take(self, method: str, path: str) -> bool:
        if self.path not in path or (self.method and self.method != method):
            return False
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
        return True

    def error(self) -> ApiError:
        return ApiError(self.status, _REASONS.get(self.status, "Injected failure"))


@dataclass
class _Call:
    request: web.Request
    match: re.Match[str]
    body: Any

    def arg(self, name: str) -> str:
        return unquote(self.match[name])

    @property
    def query(self) -> dict[str, str]:
        return dict(self.request.query)


class FakeGitHub(GitHubState):
    def __init__(
        self,
        tokens: Iterable[str] | None = ("t",),
        *,
        login: str = "chatops-bot",
        web_url: str = "https://github.com",
    ) -> None:
        """tokens: accepted tokens ("token X" or "Bearer X"); None accepts any token."""
        super().__init__()
        self.tokens = None if tokens is None else set(tokens)
        self.login = login
        self.web_url = web_url  # html_url values point here, as they do at github.com
        self.base_url = "http://127.0.0.1:0"
        self._requests: list[RecordedRequest] = []
        self._failures: list[_Rule] = []
        self._delays: list[_Rule] = []
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # A short shutdown_timeout: stop() must not wait out a delay() still in flight.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        # Binding the socket ourselves is the public way to learn the random port.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- inspection -----------------------------------------------------------------------

    def requests(
        self, method: str | None = None, path_contains: str | None = None
    ) -> list[RecordedRequest]:
        """Answered requests, oldest first."""
        return [
            r
            for r in self._requests
            if (method is None or r.method == method.upper())
            and (path_contains is None or path_contains in r.path)
        ]

    def clear_requests(self) -> None:
        self._requests.clear()

    async def wait_for(
        self,
        method: str | None = None,
        path_contains: str | None = None,
        *,
        count: int = 1,
        where: Callable[[RecordedRequest], bool] | None = None,
        timeout: float = 5.0,
    ) -> list[RecordedRequest]:
        """Wait until `count` answered requests match (earlier ones count too); return them.
        Raises TimeoutError, naming what did arrive, so a failing test says why."""
        async def matching() -> list[RecordedRequest]:
            while True:
                found = [r for r in self.requests(method, path_contains) if not where or where(r)]
                if len(found) >= count:
                    return found
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(matching(), timeout)
        except TimeoutError:
            seen = [f"{r.method} {r.path} -> {r.status}" for r in self._requests]
            raise TimeoutError(f"no {count}x {method} *{path_contains}* in {seen}") from None

    # -- fault injection ------------------------------------------------------------------

    def fail(
        self,
        path_substring: str,
        status: int = 502,
        times: int | None = 1,
        *,
        method: str = "",
        after: bool = False,
    ) -> None:
        """Answer the next `times` matching requests (None: all until heal) with `status`.
        after=True carries the request out first and only loses the answer, as when GitHub
        created the deployment but the gateway timed out; PyGithub then retries the POST."""
        rule = _Rule(path_substring, method.upper(), times, status=status, after=after)
        self._failures.append(rule)

    def delay(
        self, path_substring: str, seconds: float, times: int | None = None, *, method: str = ""
    ) -> None:
        """Hold matching requests for `seconds` before answering (PyGithub's timeout is 15s)."""
        self._delays.append(_Rule(path_substring, method.upper(), times, seconds=seconds))

    def heal(self) -> None:
        self._failures.clear()
        self._delays.clear()

    # -- HTTP -----------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        raw = await request.read()
        text = raw.decode("utf-8", "replace")
        try:
            body: Any = json.loads(text) if text else None
        except ValueError:
            body = text
        rec = RecordedRequest(
            request.method, request.path, dict(request.query), dict(request.headers), body,
            arrived,
        )
        try:
            response = await self._answer(request, rec, body)
        except ApiError as e:
            response = web.json_response(e.body, status=e.status)
        except Exception as e:  # a bug in the fake: answer 500, and say so in the record
            logging.getLogger(__name__).exception("FakeGitHub bug on %s %s", rec.method, rec.path)
            response = web.json_response({"message": f"FakeGitHub bug: {e!r}"}, status=500)
            rec.body = {"request": rec.body, "fake_error": repr(e)}
        rec.status = response.status
        self._requests.append(rec)
        self._changed.set()
        return response

    async def _answer(self, request: web.Request, rec: RecordedRequest, body: Any) -> web.Response:
        for rule in self._delays:
            if rule.take(rec.method, rec.path):
                await asyncio.sleep(rule.seconds)
        fault = next((f for f in self._failures if f.take(rec.method, rec.path)), None)
        if fault and not fault.after:
            raise fault.error()  # before auth: a failing proxy in front of GitHub answers first
        self._authenticate(request.headers.get("Authorization", ""))
        response = self._route(request, body)
        if fault:  # after=True: the work is done, only the answer is lost
            raise fault.error()
        return response

    def _route(self, request: web.Request, body: Any) -> web.Response:
        path = request.rel_url.raw_path  # still percent-encoded, so %2F stays in its segment
        for method, pattern, handler in _ROUTES:
            match = pattern.match(path)
            if match and method == request.method:
                result = handler(self, _Call(request, match, body))
                if isinstance(result, web.Response):
                    return result
                return web.json_response(result, status=201 if method == "POST" else 200)
        raise not_found()

    def _authenticate(self, header: str) -> None:
        scheme, _, token = header.partition(" ")
        if not token:
            raise ApiError(401, "Requires authentication")
        if scheme.lower() not in ("token", "bearer") or (
            self.tokens is not None and token not in self.tokens
        ):
            raise ApiError(401, "Bad credentials")  # PyGithub: BadCredentialsException

    def _page(
        self, call: _Call, items: Sequence[T], per_page: int = 30, most: int = 100
    ) -> tuple[list[T], dict[str, str]]:
        """Slice by ?page&per_page and build the Link header PyGithub follows."""
        q = call.query
        per = min(max(_int(q.get("per_page"), per_page), 1), most)
        page = max(_int(q.get("page"), 1), 1)
        last = max((len(items) + per - 1) // per, 1)
        rels = {"first": 1, "prev": page - 1} if page > 1 else {}
        if page < last:
            rels |= {"next": page + 1, "last": last}
        url = f"{self.base_url}{call.request.rel_url.raw_path}"
        links = [f'<{url}?{urlencode(q | {"page": n})}>; rel="{k}"' for k, n in rels.items()]
        link = ", ".join(links)
        return list(items[(page - 1) * per : page * per]), ({"Link": link} if link else {})

    def _list(self, call: _Call, items: Sequence[Any]) -> web.Response:
        page, headers = self._page(call, items)
        return web.json_response(page, headers=headers)

    # -- JSON shapes (the fields PyGithub reads, named as GitHub names them) ---------------

    def _api(self, r: Repo) -> str:
        return f"{self.base_url}/repos/{r.full_name}"

    def _user(self, login: str) -> JSON:
        return {"login": login, "id": zlib.crc32(login.encode()), "type": "User",
                "url": f"{self.base_url}/users/{login}", "html_url": f"{self.web_url}/{login}"}

    def _repo_json(self, r: Repo) -> JSON:
        owner, name = r.full_name.split("/")
        return {
            "id": r.id, "node_id": f"R_{r.id}", "name": name, "full_name": r.full_name,
            "owner": self._user(owner) | {"type": "Organization"}, "private": True,
            "url": self._api(r), "html_url": f"{self.web_url}/{r.full_name}",
            "default_branch": r.default_branch,
        }

    def _commit_json(self, r: Repo, c: Commit, *, full: bool = False) -> JSON:
        api, html = self._api(r), f"{self.web_url}/{r.full_name}"
        who = {"name": c.author, "email": c.email, "date": iso(c.date)}
        data: JSON = {
            "sha": c.sha, "node_id": f"C_{c.sha[:12]}", "url": f"{api}/commits/{c.sha}",
            "html_url": f"{html}/commit/{c.sha}", "comments_url": f"{api}/commits/{c.sha}/comments",
            "commit": {"url": f"{api}/git/commits/{c.sha}", "message": c.message,
                       "author": who, "committer": who, "comment_count": 0,
                       "tree": {"sha": c.sha[::-1], "url": f"{api}/git/trees/{c.sha[::-1]}"}},
            "author": self._user(c.login) if c.login else None,
            "committer": self._user(c.login) if c.login else None,
            "parents": [{"sha": p, "url": f"{api}/commits/{p}", "html_url": f"{html}/commit/{p}"}
                        for p in c.parents],
        }
        if full:  # only the single-commit endpoint carries stats and files
            data |= {"stats": {"total": 0, "additions": 0, "deletions": 0}, "files": []}
        return data

    def _ref_json(self, r: Repo, ref: str) -> JSON:
        sha = r.refs[ref]
        api = self._api(r)
        return {"ref": f"refs/{ref}", "node_id": f"REF_{ref}", "url": f"{api}/git/refs/{ref}",
                "object": {"sha": sha, "type": "commit", "url": f"{api}/git/commits/{sha}"}}

    def _status_json(self, r: Repo, s: Status) -> JSON:
        return {"id": s.id, "node_id": f"SC_{s.id}", "url": f"{self._api(r)}/statuses/{s.id}",
                "state": s.state, "context": s.context, "description": s.description,
                "target_url": s.target_url, "avatar_url": None,
                "created_at": iso(s.created_at), "updated_at": iso(s.created_at)}

    def _check_json(self, r: Repo, sha: str, c: CheckRun) -> JSON:
        return {"id": c.id, "node_id": f"CR_{c.id}", "name": c.name, "head_sha": sha,
                "status": c.status, "conclusion": c.conclusion, "external_id": "",
                "url": f"{self._api(r)}/check-runs/{c.id}",
                "html_url": f"{self.web_url}/{r.full_name}/runs/{c.id}", "details_url": None,
                "started_at": iso(c.started_at), "completed_at": iso(c.completed_at),
                "output": {"title": None, "summary": None, "text": None, "annotations_count": 0},
                "check_suite": {"id": c.id}, "pull_requests": [],
                "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"}}

    def _deployment_json(self, r: Repo, d: Deployment) -> JSON:
        url = f"{self._api(r)}/deployments/{d.id}"
        return {"id": d.id, "node_id": f"DE_{d.id}", "url": url, "sha": d.sha, "ref": d.ref,
                "task": d.task, "payload": d.payload, "environment": d.environment,
                "original_environment": d.original_environment, "description": d.description,
                "creator": self._user(self.login), "created_at": iso(d.created_at),
                "updated_at": iso(d.updated_at), "statuses_url": f"{url}/statuses",
                "repository_url": self._api(r), "transient_environment": d.transient_environment,
                "production_environment": d.production_environment,
                "performed_via_github_app": None}

    def _dstatus_json(self, r: Repo, s: DeploymentStatus) -> JSON:
        url = f"{self._api(r)}/deployments/{s.deployment_id}"
        return {"id": s.id, "node_id": f"DES_{s.id}", "url": f"{url}/statuses/{s.id}",
                "state": s.state, "creator": self._user(self.login), "description": s.description,
                "environment": s.environment, "target_url": s.log_url, "log_url": s.log_url,
                "environment_url": s.environment_url, "created_at": iso(s.created_at),
                "updated_at": iso(s.created_at), "deployment_url": url,
                "repository_url": self._api(r), "performed_via_github_app": None}

    # -- endpoint handlers ----------------------------------------------------------------

    def _repo(self, call: _Call) -> Repo:
        found = self.repos.get(f"{call.arg('owner')}/{call.arg('name')}".lower())
        if found is None:
            raise not_found()
        return found

    def _sha(self, r: Repo, ref: str) -> str:
        sha = self.resolve(r, ref)
        if sha is None:
            raise not_found()  # PyGithub makes it UnknownObjectException ("not found" in message)
        return sha

    def _deployment(self, call: _Call, r: Repo) -> Deployment:
        dep = r.deployments.get(_int(call.arg("id"), 0))
        if dep is None:
            raise not_found()
        return dep

    def h_user(self, call: _Call) -> JSON:
        return self._user(self.login)

    def h_repo(self, call: _Call) -> JSON:
        return self._repo_json(self._repo(call))

    def h_branch(self, call: _Call) -> JSON:
        r, name = self._repo(call), call.arg("ref")
        if f"heads/{name}" not in r.refs:
            raise ApiError(404, "Branch not found")
        c = r.commits[r.refs[f"heads/{name}"]]
        return {"name": name, "commit": self._commit_json(r, c), "protected": False}

    def h_commit(self, call: _Call) -> JSON:
        r, ref = self._repo(call), call.arg("ref")
        sha = self.resolve(r, ref)
        if sha is None:
            # Real GitHub answers an unknown ref here with 422, not 404, so PyGithub raises a
            # plain GithubException; get_git_ref is the call that gives UnknownObjectException.
            raise ApiError(422, f"No commit found for SHA: {ref}")
        return self._commit_json(r, r.commits[sha], full=True)

    def h_commits(self, call: _Call) -> web.Response:
        r = self._repo(call)
        head = self._sha(r, call.query.get("sha", r.default_branch))
        anc = self.ancestors(r, head)
        newest_first = [self._commit_json(r, c) for s, c in reversed(r.commits.items()) if s in anc]
        return self._list(call, newest_first)

    def h_status(self, call: _Call) -> JSON:
        r = self._repo(call)
        sha = self._sha(r, call.arg("ref"))
        latest = self.latest_statuses(r, sha)
        return {"state": self.combined_state(latest), "sha": sha, "total_count": len(latest),
                "statuses": [self._status_json(r, s) for s in latest],
                "repository": self._repo_json(r), "commit_url": f"{self._api(r)}/commits/{sha}",
                "url": f"{self._api(r)}/commits/{sha}/status"}

    def h_statuses(self, call: _Call) -> web.Response:
        r = self._repo(call)
        sha = self._sha(r, call.arg("ref"))
        newest_first = reversed(r.statuses.get(sha, []))
        return self._list(call, [self._status_json(r, s) for s in newest_first])

    def h_check_runs(self, call: _Call) -> web.Response:
        r, q = self._repo(call), call.query
        sha = self._sha(r, call.arg("ref"))
        runs = r.check_runs.get(sha, [])
        if q.get("filter", "latest") == "latest":  # GitHub's default: newest run per name
            runs = list({c.name: c for c in runs}.values())
        runs = [c for c in runs if q.get("check_name", c.name) == c.name
                and q.get("status", c.status) == c.status]
        page, headers = self._page(call, runs)
        data = {"total_count": len(runs), "check_runs": [self._check_json(r, sha, c) for c in page]}
        return web.json_response(data, headers=headers)

    def h_compare(self, call: _Call) -> web.Response:
        r = self._repo(call)
        base_ref, head_ref = call.arg("base"), call.arg("head")
        base, head = self._sha(r, base_ref), self._sha(r, head_ref)
        cmp = self.compare(r, base, head)
        # PyGithub pages Comparison.commits itself (default 250 per page, as GitHub).
        page, headers = self._page(call, cmp.commits, per_page=250, most=1000)
        html = f"{self.web_url}/{r.full_name}/compare/{base_ref}...{head_ref}"
        data = {
            "url": f"{self._api(r)}/compare/{base_ref}...{head_ref}", "html_url": html,
            "permalink_url": html, "diff_url": f"{html}.diff", "patch_url": f"{html}.patch",
            "base_commit": self._commit_json(r, r.commits[base]),
            "merge_base_commit": self._commit_json(r, r.commits[cmp.merge_base]),
            "status": cmp.status, "ahead_by": cmp.ahead_by, "behind_by": cmp.behind_by,
            "total_commits": cmp.ahead_by, "commits": [self._commit_json(r, c) for c in page],
            "files": [],
        }
        return web.json_response(data, headers=headers)

    def h_ref(self, call: _Call) -> JSON:
        r, ref = self._repo(call), call.arg("ref")
        if ref not in r.refs:  # /git/ref/ wants the exact "heads/x" or "tags/x"
            raise not_found()
        return self._ref_json(r, ref)

    def h_refs(self, call: _Call) -> JSON | web.Response:
        r, ref = self._repo(call), unquote(call.match["ref"] or "")
        if ref in r.refs:  # legacy /git/refs/<exact> answers the object itself
            return self._ref_json(r, ref)
        hits = [self._ref_json(r, n) for n in sorted(r.refs) if n.startswith(ref)]
        if not hits and ref:
            raise not_found()
        return self._list(call, hits)

    def h_matching_refs(self, call: _Call) -> web.Response:
        r, ref = self._repo(call), call.arg("ref")
        return self._list(call, [self._ref_json(r, n) for n in sorted(r.refs) if n.startswith(ref)])

    def h_tags(self, call: _Call) -> web.Response:
        r = self._repo(call)
        # GitHub documents no order for tags; the fake lists newest-created first, so a bot
        # that needs "the previous release" must sort or compare, not trust the order.
        tags = [(n[5:], s) for n, s in reversed(r.refs.items()) if n.startswith("tags/")]
        arc = self._api(r)
        return self._list(call, [{"name": n, "commit": {"sha": s, "url": f"{arc}/commits/{s}"},
                                  "zipball_url": f"{arc}/zipball/refs/tags/{n}",
                                  "tarball_url": f"{arc}/tarball/refs/tags/{n}",
                                  "node_id": f"TAG_{n}"} for n, s in tags])

    def h_create_deployment(self, call: _Call) -> JSON:
        r = self._repo(call)
        return self._deployment_json(r, self.create_deployment(r, call.body))

    def h_deployments(self, call: _Call) -> web.Response:
        r, q = self._repo(call), call.query
        keep = [d for d in reversed(r.deployments.values())  # newest first, as GitHub
                if all(q.get(k, getattr(d, k)) == getattr(d, k)
                       for k in ("sha", "ref", "task", "environment"))]
        return self._list(call, [self._deployment_json(r, d) for d in keep])

    def h_deployment(self, call: _Call) -> JSON:
        r = self._repo(call)
        return self._deployment_json(r, self._deployment(call, r))

    def h_create_dstatus(self, call: _Call) -> JSON:
        r = self._repo(call)
        dep = self._deployment(call, r)
        return self._dstatus_json(r, self.create_deployment_status(r, dep, call.body))

    def h_dstatuses(self, call: _Call) -> web.Response:
        r = self._repo(call)
        dep = self._deployment(call, r)
        return self._list(call, [self._dstatus_json(r, s) for s in reversed(dep.statuses)])

    def h_dstatus(self, call: _Call) -> JSON:
        r = self._repo(call)
        for s in self._deployment(call, r).statuses:
            if s.id == _int(call.arg("sid"), 0):
                return self._dstatus_json(r, s)
        raise not_found()


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _route(method: str, pattern: str, handler: _Handler) -> tuple[str, re.Pattern[str], _Handler]:
    return method, re.compile(pattern + "/?$"), handler


# Order matters: ".../commits/<ref>/status" must win over ".../commits/<ref>".
_ROUTES = [
    _route("GET", r"^/user", FakeGitHub.h_user),
    _route("GET", _REPO, FakeGitHub.h_repo),
    _route("GET", _REPO + r"/branches/(?P<ref>.+)", FakeGitHub.h_branch),
    _route("GET", _REPO + r"/commits/(?P<ref>.+)/status", FakeGitHub.h_status),
    _route("GET", _REPO + r"/commits/(?P<ref>.+)/statuses", FakeGitHub.h_statuses),
    _route("GET", _REPO + r"/commits/(?P<ref>.+)/check-runs", FakeGitHub.h_check_runs),
    _route("GET", _REPO + r"/commits/(?P<ref>.+)", FakeGitHub.h_commit),
    _route("GET", _REPO + r"/commits", FakeGitHub.h_commits),
    _route("GET", _REPO + r"/statuses/(?P<ref>[^/]+)", FakeGitHub.h_statuses),
    _route("GET", _REPO + r"/compare/(?P<base>.+?)\.\.\.(?P<head>.+)", FakeGitHub.h_compare),
    _route("GET", _REPO + r"/git/ref/(?P<ref>.+)", FakeGitHub.h_ref),
    _route("GET", _REPO + r"/git/refs(?:/(?P<ref>.+))?", FakeGitHub.h_refs),
    _route("GET", _REPO + r"/git/matching-refs/(?P<ref>.*)", FakeGitHub.h_matching_refs),
    _route("GET", _REPO + r"/tags", FakeGitHub.h_tags),
    _route("POST", _REPO + r"/deployments", FakeGitHub.h_create_deployment),
    _route("GET", _REPO + r"/deployments", FakeGitHub.h_deployments),
    _route("GET", _REPO + r"/deployments/(?P<id>\d+)", FakeGitHub.h_deployment),
    _route("POST", _REPO + r"/deployments/(?P<id>\d+)/statuses", FakeGitHub.h_create_dstatus),
    _route("GET", _REPO + r"/deployments/(?P<id>\d+)/statuses", FakeGitHub.h_dstatuses),
    _route("GET", _REPO + r"/deployments/(?P<id>\d+)/statuses/(?P<sid>\d+)", FakeGitHub.h_dstatus),
]
