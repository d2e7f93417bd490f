"""Jira for the postmortem domain: create or update issues, link them, find accounts.

Built on the `jira` library, which is synchronous: every call, the client's construction
included (it asks /serverInfo whether this is Cloud or Server), runs in a worker thread,
never on the event loop. Failures surface as JiraError with a kind the caller can act on;
jira, requests and urllib3 exceptions never escape.

Retries: the library's ResilientSession would sleep and re-send a request, POSTs included,
after a 429, a 503 or a dropped connection, so a lost answer to POST /issue could create a
second issue and a chat command could block for minutes. Here it never retries
(max_retries=0); "unavailable" errors go back to the caller, whose scheduler retries with
backoff. That is safe because upsert_issue and link are idempotent: the issue carries a
unique label that is searched for before anything is created.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, TypeVar

import requests
import urllib3
from jira import JIRA, JIRAError
from jira.resources import Issue

T = TypeVar("T")
ErrorKind = Literal["auth", "forbidden", "invalid", "not_found", "unavailable"]

_KINDS: dict[int, ErrorKind] = {401: "auth", 403: "forbidden", 404: "not_found"}
_SUMMARY_MAX = 255  # Jira rejects longer summaries
# What upsert_issue compares to decide whether an edit is needed at all.
_SEARCH_FIELDS = ("summary", "description", "labels", "components", "assignee", "duedate")
# Wiki-markup characters that start an effect, a macro, a link, an image or a table cell;
# and the backslash, which would escape whatever follows it.
_MARKUP = re.compile(r"[\\|{}\[\]*_\-+^~?!#]")


@dataclass(frozen=True)
class IssueRef:
    key: str
    url: str  # the issue's web page
    created: bool  # False: an issue carrying the unique label already existed


class JiraError(Exception):
    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        # Callers show str(exc) in chat: lead with what Jira said.
        answer = f"HTTP {status}" if status else "no answer"
        super().__init__(f"{message} (Jira {kind}, {answer})")
        self.kind: ErrorKind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after  # seconds, when Jira said how long to back off

    @property
    def retryable(self) -> bool:
        """Only an unavailable Jira may answer differently later; a refusal is final."""
        return self.kind == "unavailable"


class JiraClient:
    def __init__(self, server: str, user: str | None, token: str, *, timeout: float = 10.0) -> None:
        """user + token: basic auth (Cloud: the account's email and an API token). user None:
        token is a personal access token sent as a bearer token (Server / Data Center)."""
        self.server = server.rstrip("/")
        self._user, self._token, self._timeout = user, token, timeout
        self._jira: JIRA | None = None
        # One call at a time: requests.Session is not thread-safe, and two upserts of one
        # postmortem racing in this process would both miss the search and both create.
        self._lock = threading.Lock()

    async def check(self) -> str:
        """The display name Jira knows these credentials by; raises JiraError("auth") on bad
        credentials. For readiness checks and a clear error at startup."""
        return await self._run(lambda jira: str(jira.myself().get("displayName", "")))

    async def upsert_issue(
        self,
        *,
        unique_label: str,
        project: str,
        issue_type: str,
        summary: str,
        description: str,
        labels: list[str],
        components: list[str],
        parent: str | None = None,
        assignee: str | None = None,
        due: date | None = None,
    ) -> IssueRef:
        """Create the issue carrying `unique_label`, or update the one that already does.

        Repeating the call after any failure, a lost answer included, never makes a second
        issue. On update, summary, description, labels and components are replaced; assignee
        and due date only when given (None leaves what people set in Jira); the project, type
        and parent stay as created. An update that would change nothing is not sent, since
        every edit notifies the issue's watchers. assignee is what account_for_email returns.
        """
        if not unique_label or re.search(r"\s", unique_label):
            raise JiraError("invalid", f"unique label {unique_label!r} must be one word")
        jql = f"project = {_quote(project)} AND labels = {_quote(unique_label)} ORDER BY created"

        def work(jira: JIRA) -> IssueRef:
            fields: dict[str, Any] = {
                "summary": " ".join(summary.split())[:_SUMMARY_MAX],  # Jira: one line
                "description": description,
                "labels": sorted({*labels, unique_label}),
                "components": [{"name": c} for c in components],
            }
            if assignee is not None:
                fields["assignee"] = {_user_key(jira): assignee}
            if due is not None:
                fields["duedate"] = due.isoformat()

            def find() -> Issue | None:
                # Oldest first: a person cloning the issue copies its labels too.
                # A fresh list: the library rewrites the one it is given in place.
                found = jira.search_issues(jql, maxResults=1, fields=list(_SEARCH_FIELDS))
                return found[0] if found else None

            existing = _call(find)
            if existing is not None:
                if not _same(existing.raw.get("fields") or {}, fields, _user_key(jira)):
                    _call(lambda: existing.update(fields=fields))
                return IssueRef(existing.key, self._browse(existing.key), created=False)
            new = fields | {"project": {"key": project}, "issuetype": {"name": issue_type}}
            if parent is not None:
                new["parent"] = {"key": parent}
            try:
                key = _call(lambda: str(jira.create_issue(fields=new, prefetch=False).key))
            except JiraError as exc:
                # A timeout or dropped connection may come after Jira created the issue.
                if exc.kind == "unavailable" and (made := _maybe(find)) is not None:
                    return IssueRef(made.key, self._browse(made.key), created=True)
                raise
            return IssueRef(key, self._browse(key), created=True)

        return await self._run(work)

    async def link(self, inward: str, outward: str, link_type: str = "Relates") -> bool:
        """Link two issues unless a link of this type already joins them (either way round);
        True when a link was made."""

        def linked(jira: JIRA) -> bool:
            raw = jira.issue(inward, fields="issuelinks").raw
            for ln in (raw.get("fields") or {}).get("issuelinks") or []:
                other = ln.get("outwardIssue") or ln.get("inwardIssue") or {}
                if (ln.get("type") or {}).get("name") == link_type and other.get("key") == outward:
                    return True
            return False

        def work(jira: JIRA) -> bool:
            if _call(lambda: linked(jira)):
                return False
            try:
                _call(lambda: jira.create_issue_link(link_type, inward, outward))
            except JiraError as exc:
                if exc.kind == "unavailable" and _maybe(lambda: linked(jira)):
                    return True  # the answer was lost, the link was made
                raise
            return True

        return await self._run(work)

    async def account_for_email(self, email: str) -> str | None:
        """The accountId (Cloud) or user name (Server) of the user with this email, or None."""

        def work(jira: JIRA) -> str | None:
            cloud = _user_key(jira) == "accountId"
            # Cloud matches `query` against email and name; Server's `username` as well.
            found = jira.search_users(query=email) if cloud else jira.search_users(user=email)
            users = [u.raw for u in found]
            exact = [u for u in users if str(u.get("emailAddress", "")).lower() == email.lower()]
            # Cloud hides emails by users' privacy settings: one hit without one is the match.
            hidden = [u for u in users if not u.get("emailAddress")] if len(users) == 1 else []
            for user in exact or hidden:
                return str(user["accountId" if cloud else "name"])
            return None

        return await self._run(work)

    async def close(self) -> None:
        def work() -> None:
            with self._lock:
                if self._jira is not None:
                    self._jira.close()  # type: ignore[no-untyped-call]  # unannotated upstream
                    self._jira = None

        await asyncio.to_thread(work)

    # -- helpers (all run in worker threads) ---------------------------------------------

    async def _run(self, fn: Callable[[JIRA], T]) -> T:
        def work() -> T:
            with self._lock:
                return _call(lambda: fn(self._connect()))

        # The library blocks; on the loop it would stall every other chat command.
        return await asyncio.to_thread(work)

    def _connect(self) -> JIRA:
        if self._jira is None:  # built lazily: construction already asks Jira something
            auth = (
                {"basic_auth": (self._user, self._token)}
                if self._user
                else {"token_auth": self._token}
            )
            self._jira = JIRA(
                server=self.server,
                timeout=self._timeout,
                max_retries=0,  # see the module docstring
                get_server_info=True,  # Cloud and Server search and name users differently
                options={"check_update": False, "headers": {"User-Agent": "chatops-bot"}},
                **auth,
            )
        return self._jira

    def _browse(self, key: str) -> str:
        return f"{self.server}/browse/{key}"


def escape_markup(text: str) -> str:
    """Text as one Jira wiki-markup table cell: markup characters escaped, line breaks made
    `\\\\` (a newline would end the row), never empty (an empty cell collapses)."""
    # A backslash cannot escape itself (`\\\\` is a line break): it becomes an entity.
    text = _MARKUP.sub(lambda m: "&#92;" if m[0] == "\\" else "\\" + m[0], text)
    lines = [line.strip() for line in text.splitlines()]
    return " \\\\ ".join(line for line in lines if line) or " "


def _call(fn: Callable[[], T]) -> T:
    """Call fn, turning every library failure into a JiraError."""
    try:
        return fn()
    except JiraError:
        raise
    except JIRAError as exc:
        raise _from_jira(exc) from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        # Connection refused/reset, timeouts, an answer that is not JSON.
        raise JiraError("unavailable", f"{type(exc).__name__}: {exc}") from None


def _maybe(fn: Callable[[], T]) -> T | None:
    """fn's answer, or None if Jira did not give one (used while recovering from an error)."""
    try:
        return _call(fn)
    except JiraError:
        return None


def _from_jira(exc: JIRAError) -> JiraError:
    status = exc.status_code if isinstance(exc.status_code, int) else None
    # Never str(exc): JIRAError.__str__ prints the request headers, credentials included.
    message = _jira_message(exc.response) or exc.text or "no details"
    if status is None or status == 429 or status >= 500:
        return JiraError("unavailable", message, status, _retry_after(exc.response))
    return JiraError(_KINDS.get(status, "invalid"), message, status)


def _retry_after(response: requests.Response | None) -> float | None:
    try:  # Jira sends whole seconds; an HTTP date is possible but not seen from Jira
        return float(response.headers["Retry-After"]) if response is not None else None
    except (KeyError, ValueError):
        return None


def _jira_message(response: requests.Response | None) -> str:
    """Jira's own words: errorMessages, then each field error as `field: message`."""
    if response is None:
        return ""
    try:
        data = response.json()
    except ValueError:
        return " ".join(response.text.split())[:200]  # an HTML error page from a proxy
    if not isinstance(data, dict):
        return ""
    messages = [str(m) for m in data.get("errorMessages") or []]
    errors = data.get("errors") or {}
    if isinstance(errors, dict):
        messages += [f"{name}: {text}" for name, text in errors.items()]
    return "; ".join(messages) or str(data.get("message") or data.get("errorMessage") or "")


def _user_key(jira: JIRA) -> str:
    # Cloud names people by accountId only (GDPR); Server and Data Center by user name.
    return "accountId" if jira.deploymentType == "Cloud" else "name"


def _same(shown: dict[str, Any], sent: dict[str, Any], user_key: str) -> bool:
    """Whether the issue's fields, as Jira shows them, already are what would be sent."""

    def plain(fields: dict[str, Any]) -> dict[str, Any]:
        return {
            "summary": fields.get("summary"),
            "description": fields.get("description") or "",
            "labels": sorted(fields.get("labels") or []),
            "components": sorted(str(c.get("name")) for c in fields.get("components") or []),
            "assignee": (fields.get("assignee") or {}).get(user_key),
            "duedate": fields.get("duedate"),
        }

    now, then = plain(shown), plain(sent)
    return all(now[name] == then[name] for name in sent)  # fields not sent are kept


def _quote(value: str) -> str:
    """A JQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
