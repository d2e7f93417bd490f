"""A fake Jira REST API v2 (Server/Data Center or Cloud) that the real `jira` library talks to.

    async with FakeJira() as fake:                      # FakeJira(cloud=True): Jira Cloud
        fake.add_project("OPS", components=["api"])
        client = JIRA(server=fake.base_url, basic_auth=(fake.user, fake.token), max_retries=0)

The `jira` library is synchronous and this server runs on the test's event loop, so every
library call must run in a worker thread (asyncio.to_thread); on the loop it would deadlock.

Served: serverInfo, myself, field, issuetype, issueLinkType, project/{key}, issue create, get
and edit, issueLink, user/search, and search (GET or POST; on Cloud search/jql, while the old
endpoint answers 410 as Cloud does). Errors have Jira's shape, {"errorMessages": [...],
"errors": {field: message}}, so the library reports them as it would real ones. createmeta
is not served: the bot names the project and issue type in the create request, so the
library never asks for it.

The model, Jira's validation rules and the JQL subset live in jira_state.py; this module is
routing, JSON shapes, auth, request recording and fault injection.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import socket
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web

from .jira_state import (
    JSON,
    LINK_TYPES,
    TYPES,
    FakeIssue,
    FakeLink,
    FakeUser,
    JiraApiError,
    JiraState,
)

__all__ = [
    "JSON",
    "FakeIssue",
    "FakeJira",
    "FakeLink",
    "FakeUser",
    "JiraApiError",
    "RecordedRequest",
]

_PREFIX = re.compile(r"/rest/api/(?:2|latest)(/.*)")
_FIELDS = "summary description labels components issuetype project status assignee duedate"
_FIELDS += " parent issuelinks created updated"
_UNAUTHORIZED = {
    "WWW-Authenticate": 'Basic realm="protected-area"',
    "X-Seraph-LoginReason": "AUTHENTICATED_FAILED",
}


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: dict[str, str]  # a repeated parameter (?fields=a&fields=b) joined as "a,b"
    body: Any  # decoded JSON; the raw text if it was not JSON; None if empty
    auth: str  # the Authorization header, "" if none
    time: float  # time.monotonic() at arrival
    status: int = 0  # what the fake answered; 0: the connection was dropped unanswered


@dataclass
class _Fault:
    remaining: int
    status: int | None  # None: close the connection without answering
    method: str | None
    path: str | None  # a regex searched in the request path
    body: Any = None
    retry_after: int | None = None
    after: bool = False  # carry the request out, then lose or replace the answer
    skip: int = 0  # let this many matching requests through first

    def take(self, method: str, path: str) -> bool:
        if self.remaining <= 0 or (self.method and self.method.upper() != method):
            return False
        if self.path and not re.search(self.path, path):
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        self.remaining -= 1
        return True


class FakeJira(JiraState):
    def __init__(
        self,
        *,
        cloud: bool = False,
        user: str | None = "bot@example.com",
        token: str = "t",  # noqa: S107 -- a fixed test credential
    ) -> None:
        """Accepts only these credentials: basic auth user:token, or with user=None `token` as
        a bearer token (a Server personal access token)."""
        super().__init__(cloud=cloud)
        self.user, self.token = user, token
        self.display_name = "ChatOps Bot"  # what /myself answers
        self.base_url = "http://127.0.0.1:0"
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._down: Literal["503", "drop"] | None = None
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))  # binding ourselves is how we learn the free port
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- setup and inspection -------------------------------------------------------------

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, oldest first; path is a regex searched in the request path."""
        wanted = method.upper() if method else None
        hits = [r for r in self.requests if wanted in (None, r.method)]
        return [r for r in hits if path is None or re.search(path, r.path)]

    def issue_json(self, key: str) -> JSON:
        """The issue as GET /rest/api/2/issue/{key} shows it."""
        return self._issue_json(self.issues[key], None)

    # -- fault injection ------------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        *,
        body: Any = None,
        retry_after: int | None = None,
        method: str | None = None,
        path: str | None = None,
        skip: int = 0,
    ) -> None:
        """Answer n matching requests (path: a regex), after letting `skip` through, with
        `status` before doing anything, as a proxy in front of Jira would. body: a dict (JSON)
        or str; by default a Jira-shaped error."""
        self._faults.append(_Fault(n, status, method, path, body, retry_after, skip=skip))

    def lose_responses(
        self,
        n: int = 1,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
    ) -> None:
        """Carry out the next n matching requests, then close the connection unanswered
        (status None) or answer `status`: a gateway timing out after Jira did the work."""
        self._faults.append(_Fault(n, status, method, path, after=True))

    def drop_response_after_create(self, status: int | None = None) -> None:
        self.lose_responses(1, method="POST", path=r"/issue$", status=status)

    def down(self, mode: Literal["503", "drop"] = "503") -> None:
        """Until up(): every request answers 503, or ("drop") has its connection closed."""
        self._down = mode

    def up(self) -> None:
        """Jira is back: also forgets pending faults."""
        self._down = None
        self._faults.clear()

    def require_auth(self, user: str | None, token: str) -> None:
        self.user, self.token = user, token

    # -- HTTP -----------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        text = (await request.read()).decode("utf-8", "replace")
        try:
            body: Any = json.loads(text) if text else None
        except ValueError:
            body = text
        query = {k: ",".join(request.query.getall(k)) for k in request.query}
        auth = request.headers.get("Authorization", "")
        rec = RecordedRequest(request.method, request.path, query, body, auth, time.monotonic())
        self.requests.append(rec)  # now: a dropped connection is recorded too
        if self._down:
            return self._fault(
                request, rec, _Fault(1, 503 if self._down == "503" else None, "", "")
            )
        fault = next((f for f in self._faults if f.take(rec.method, rec.path)), None)
        if fault and not fault.after:
            return self._fault(request, rec, fault)
        try:
            self._authenticate(rec)
            rec.status, data = self._route(rec)
        except JiraApiError as e:
            rec.status, data = e.status, e.body
        if fault:
            return self._fault(request, rec, fault)
        headers = _UNAUTHORIZED if rec.status == 401 else None
        if data is None:
            return web.Response(status=rec.status, headers=headers)
        return web.json_response(data, status=rec.status, headers=headers)

    def _fault(self, request: web.Request, rec: RecordedRequest, f: _Fault) -> web.Response:
        rec.status = f.status or 0
        if f.status is None:
            if request.transport is not None:
                request.transport.abort()  # the client sees the connection close unanswered
            return web.Response(status=500)  # never delivered
        headers = {"Retry-After": str(f.retry_after)} if f.retry_after is not None else {}
        if isinstance(f.body, str):
            return web.Response(status=f.status, text=f.body, headers=headers)
        body = f.body if f.body is not None else JiraApiError(f.status, "Injected failure").body
        return web.json_response(body, status=f.status, headers=headers)

    def _authenticate(self, rec: RecordedRequest) -> None:
        if not rec.auth and rec.path.endswith("/serverInfo"):
            return  # readable anonymously; wrong credentials are refused everywhere
        scheme, _, value = rec.auth.partition(" ")
        if self.user is None:
            ok = scheme.lower() == "bearer" and value == self.token
        else:
            try:
                decoded = base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            ok = scheme.lower() == "basic" and decoded == f"{self.user}:{self.token}"
        if not ok:
            raise JiraApiError(401, "Client must be authenticated to access this resource.")

    def _route(self, rec: RecordedRequest) -> tuple[int, Any]:
        if m := _PREFIX.fullmatch(rec.path):
            for methods, pattern, handler in _ROUTES:
                if rec.method in methods and (args := pattern.fullmatch(m[1])):
                    return handler(self, rec, *args.groups())  # type: ignore[no-any-return]
        raise JiraApiError(404, f"null for uri: {self.base_url}{rec.path}")

    # -- JSON shapes ----------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}/rest/api/2/{path}"

    def _user_json(self, u: FakeUser) -> JSON:
        who: JSON = {"accountType": "atlassian"} if self.cloud else {}
        query = "accountId" if self.cloud else "username"
        who |= {"accountId": u.ref} if self.cloud else {"name": u.ref, "key": u.ref}
        who |= {"emailAddress": u.email, "displayName": u.display_name, "active": True}
        return who | {"self": self._url(f"user?{query}={u.ref}")}

    def _type_json(self, name: str) -> JSON:
        tid, url = TYPES[name], self._url(f"issuetype/{TYPES[name]}")
        return {"id": tid, "name": name, "subtask": name == "Sub-task", "self": url}

    def _link_type_json(self, name: str) -> JSON:
        lid, inward, outward = LINK_TYPES[name]
        url = self._url(f"issueLinkType/{lid}")
        return {"id": lid, "name": name, "inward": inward, "outward": outward, "self": url}

    def _project_json(self, p: JSON) -> JSON:
        url = self._url(f"project/{p['id']}")
        return {"id": p["id"], "key": p["key"], "name": p["key"], "self": url}

    def _brief(self, i: FakeIssue) -> JSON:
        """An issue as another issue's parent, sub-task or link shows it."""
        summary = {"summary": i.summary, "status": {"name": "To Do"}}
        fields = summary | {"issuetype": self._type_json(i.issuetype)}
        return {"id": str(i.id), "key": i.key, "self": self._url(f"issue/{i.id}"), "fields": fields}

    def _issue_json(self, i: FakeIssue, wanted: set[str] | None) -> JSON:
        comps = self.projects[i.project]["comps"]
        user = next((u for u in self.users if u.ref == i.assignee), None)
        links = []
        for ln in self.links:  # each side shows the other issue, named by its role
            if i.key in (ln.inward, ln.outward):
                role, other = (
                    ("outward", ln.outward) if ln.inward == i.key else ("inward", ln.inward)
                )
                link = {"id": str(ln.id), "type": self._link_type_json(ln.type)}
                links.append(link | {f"{role}Issue": self._brief(self.issues[other])})
        plain = ("summary", "description", "labels", "duedate", "created", "updated")
        fields: JSON = {name: getattr(i, name) for name in plain} | {
            "components": [{"id": comps[c], "name": c} for c in i.components],
            "issuetype": self._type_json(i.issuetype),
            "status": {"name": "To Do"},
            "project": self._project_json(self.projects[i.project]),
            "issuelinks": links,
            "assignee": user and self._user_json(user),
            "subtasks": [self._brief(s) for s in self.issues.values() if s.parent == i.key],
        }
        if i.parent:
            fields["parent"] = self._brief(self.issues[i.parent])
        if wanted is not None and not {"*all", "*navigable"} & wanted:
            fields = {k: v for k, v in fields.items() if k in wanted}
        url = self._url(f"issue/{i.id}")
        return {"id": str(i.id), "self": url, "key": i.key, "fields": fields}

    # -- handlers: each returns (status, JSON or None) ------------------------------------

    def h_server_info(self, rec: RecordedRequest) -> tuple[int, Any]:
        kind, version = ("Cloud", [1001, 0, 0]) if self.cloud else ("Server", [9, 12, 0])
        about = {"baseUrl": self.base_url, "serverTitle": "Fake Jira", "deploymentType": kind}
        return 200, about | {"version": ".".join(map(str, version)), "versionNumbers": version}

    def h_myself(self, rec: RecordedRequest) -> tuple[int, Any]:
        ref = "5b10ac8d0000000000000001" if self.cloud else "chatops-bot"
        return 200, self._user_json(FakeUser(ref, self.user or "", self.display_name))

    def h_fields(self, rec: RecordedRequest) -> tuple[int, Any]:
        # clauseNames matter: the library builds its name→id cache from them.
        common = {"custom": False, "navigable": True, "searchable": True}
        return 200, [{"id": f, "name": f, "clauseNames": [f]} | common for f in _FIELDS.split()]

    def h_issue_types(self, rec: RecordedRequest) -> tuple[int, Any]:
        return 200, [self._type_json(name) for name in TYPES]

    def h_link_types(self, rec: RecordedRequest) -> tuple[int, Any]:
        return 200, {"issueLinkTypes": [self._link_type_json(name) for name in LINK_TYPES]}

    def h_project(self, rec: RecordedRequest, key: str) -> tuple[int, Any]:
        p = self._project(key)
        if p is None:
            raise JiraApiError(404, f"No project could be found with key '{key}'.")
        comps = [{"id": cid, "name": c} for c, cid in p["comps"].items()]
        types = [self._type_json(t) for t in TYPES]
        return 200, self._project_json(p) | {"components": comps, "issueTypes": types}

    def h_create(self, rec: RecordedRequest) -> tuple[int, Any]:
        fields = rec.body.get("fields") if isinstance(rec.body, dict) else None
        if not isinstance(fields, dict):
            raise JiraApiError(400, "Can not deserialize the request: no 'fields'.")
        issue = self._create_issue(fields)
        return 201, {"id": str(issue.id), "key": issue.key, "self": self._url(f"issue/{issue.id}")}

    def h_get(self, rec: RecordedRequest, key: str) -> tuple[int, Any]:
        wanted = set(rec.query.get("fields", "*all").split(","))
        return 200, self._issue_json(self._issue(key), wanted)

    def h_edit(self, rec: RecordedRequest, key: str) -> tuple[int, Any]:
        self._edit_issue(key, rec.body if isinstance(rec.body, dict) else {})
        return 204, None

    def h_link(self, rec: RecordedRequest) -> tuple[int, Any]:
        self._add_link(rec.body if isinstance(rec.body, dict) else {})
        return 201, None

    def h_search(self, rec: RecordedRequest, jql_api: str | None) -> tuple[int, Any]:
        if self.cloud and not jql_api:  # Atlassian removed /search from Cloud in 2025
            gone = (
                "The requested API has been removed. Please migrate to the /rest/api/3/search/jql"
            )
            raise JiraApiError(410, gone + " API.")
        if jql_api and not self.cloud:
            raise JiraApiError(404, f"null for uri: {self.base_url}{rec.path}")
        params = rec.body if rec.method == "POST" and isinstance(rec.body, dict) else rec.query
        found = self._jql(str(params.get("jql") or ""))
        start, most = int(params.get("startAt") or 0), int(params.get("maxResults") or 50)
        wanted = params.get("fields") or ["*navigable"]
        wanted = set(wanted.split(",") if isinstance(wanted, str) else wanted)
        issues = [self._issue_json(i, wanted) for i in found[start : start + most]]
        if jql_api:  # Cloud pages by nextPageToken; with none, the client stops here
            return 200, {"issues": issues, "isLast": start + most >= len(found)}
        return 200, {"startAt": start, "maxResults": most, "total": len(found), "issues": issues}

    def h_user_search(self, rec: RecordedRequest) -> tuple[int, Any]:
        param = "query" if self.cloud else "username"
        if not (term := rec.query.get(param, "").lower()):
            raise JiraApiError(400, f"The {param} query parameter was not provided")
        return 200, [self._user_json(u) for u in self._find_users(term)]


_ROUTES: list[tuple[tuple[str, ...], re.Pattern[str], Any]] = [
    (("GET",), re.compile(r"/serverInfo"), FakeJira.h_server_info),
    (("GET",), re.compile(r"/myself"), FakeJira.h_myself),
    (("GET",), re.compile(r"/field"), FakeJira.h_fields),
    (("GET",), re.compile(r"/issuetype"), FakeJira.h_issue_types),
    (("GET",), re.compile(r"/issueLinkType"), FakeJira.h_link_types),
    (("GET",), re.compile(r"/project/([^/]+)"), FakeJira.h_project),
    (("POST",), re.compile(r"/issue"), FakeJira.h_create),
    (("GET",), re.compile(r"/issue/([^/]+)"), FakeJira.h_get),
    (("PUT",), re.compile(r"/issue/([^/]+)"), FakeJira.h_edit),
    (("POST",), re.compile(r"/issueLink"), FakeJira.h_link),
    (("GET", "POST"), re.compile(r"/search(/jql)?"), FakeJira.h_search),
    (("GET",), re.compile(r"/user/search"), FakeJira.h_user_search),
]
