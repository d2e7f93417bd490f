"""The in-memory Jira behind FakeJira: projects, issues, links, users, and Jira's rules.

Kept apart from the HTTP layer (jira_api.py) so field validation and the JQL subset are
plain code a reader can check against Jira's behaviour. Errors Jira would answer with are
raised as `JiraApiError`; the HTTP layer renders them with Jira's error shape.

JQL is a subset: `field = value` clauses on project, labels, issuetype, parent or key, joined
by AND, then an optional ORDER BY (id order, DESC reverses).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

JSON = dict[str, Any]
TYPES = {"Task": "10001", "Bug": "10002", "Story": "10003", "Epic": "10004", "Sub-task": "10005"}
LINK_TYPES = {  # name: (id, inward, outward)
    "Blocks": ("10000", "is blocked by", "blocks"),
    "Cloners": ("10001", "is cloned by", "clones"),
    "Duplicate": ("10002", "is duplicated by", "duplicates"),
    "Relates": ("10003", "relates to", "relates to"),
}
_JQL_FIELDS = {"project", "labels", "issuetype", "parent", "key", "issuekey"}
_CLAUSE = re.compile(r'\s*(\w+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s"]+)\s*(?:AND\b|$)', re.IGNORECASE)


class JiraApiError(Exception):
    def __init__(self, status: int, *messages: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(status, messages, errors)
        self.status, self.body = status, {"errorMessages": list(messages), "errors": errors or {}}


@dataclass
class FakeIssue:
    id: int
    key: str
    project: str
    issuetype: str
    summary: str = ""
    description: str | None = None
    labels: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)  # names
    assignee: str | None = None  # accountId on Cloud, user name on Server
    duedate: str | None = None  # YYYY-MM-DD
    parent: str | None = None  # the parent's key
    created: str = ""
    updated: str = ""


@dataclass
class FakeLink:
    id: int
    type: str
    inward: str  # issue keys as posted to /issueLink
    outward: str


@dataclass
class FakeUser:
    ref: str  # accountId on Cloud, name on Server
    email: str
    display_name: str


class JiraState:
    """The seedable model. FakeJira inherits it, so tests seed through the fake itself."""

    def __init__(self, *, cloud: bool = False) -> None:
        self.cloud = cloud
        self.projects: dict[str, JSON] = {}
        self.issues: dict[str, FakeIssue] = {}
        self.links: list[FakeLink] = []
        self.users: list[FakeUser] = []
        self._ids = 10000

    # -- seeding --------------------------------------------------------------------------

    def add_project(self, key: str, *, components: list[str] | tuple[str, ...] = ()) -> None:
        comps = {c: str(self._next_id()) for c in components}
        self.projects[key] = {"id": str(self._next_id()), "key": key, "comps": comps}

    def add_user(self, email: str, display_name: str = "", *, name: str | None = None) -> str:
        """Returns how the API names the user: an accountId on Cloud, a user name on Server."""
        ref = f"5b10ac8d{self._next_id():016x}" if self.cloud else name or email.split("@")[0]
        self.users.append(FakeUser(ref, email, display_name or email))
        return ref

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    # -- lookups --------------------------------------------------------------------------

    def _project(self, key_or_id: str) -> JSON | None:
        return next((p for p in self.projects.values() if key_or_id in (p["key"], p["id"])), None)

    def _issue(self, key_or_id: str) -> FakeIssue:
        for i in self.issues.values():
            if key_or_id in (i.key, str(i.id)):
                return i
        raise JiraApiError(404, "Issue does not exist or you do not have permission to see it.")

    def _find_users(self, term: str) -> list[FakeUser]:
        """Users whose email, display name or ref contains `term` (lower case)."""
        return [
            u
            for u in self.users
            if any(term in s.lower() for s in (u.email, u.display_name, u.ref))
        ]

    # -- changes --------------------------------------------------------------------------

    def _create_issue(self, fields: JSON) -> FakeIssue:
        """Create an issue from a create request's `fields` (not changed here)."""
        fields = dict(fields)  # a copy: the recorded body stays as it was sent
        ref, kind = fields.pop("project", None) or {}, fields.pop("issuetype", None) or {}
        project = self._project(str(ref.get("key") or ref.get("id")))
        type_name = next(
            (n for n, i in TYPES.items() if n == kind.get("name") or i == kind.get("id")), None
        )
        errors = {}
        if project is None:
            errors["project"] = "valid project is required"
        if type_name is None:
            errors["issuetype"] = "valid issue type is required"
        if not fields.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        if type_name == "Sub-task" and not fields.get("parent"):
            errors["parent"] = "Issue type is a sub-task but parent issue key or id not specified."
        if errors or project is None or type_name is None:
            raise JiraApiError(400, errors=errors)
        n = 1 + sum(i.project == project["key"] for i in self.issues.values())
        issue = FakeIssue(self._next_id(), f"{project['key']}-{n}", project["key"], type_name)
        self._apply(issue, fields)  # raises before the issue is stored: a 400 creates nothing
        self.issues[issue.key] = issue
        return issue

    def _edit_issue(self, key: str, body: JSON) -> None:
        issue = self._issue(key)
        if body.get("update"):  # Jira's add/remove/set verbs: the bot does not use them
            raise JiraApiError(400, "FakeJira supports only 'fields' in an edit")
        self._apply(issue, body.get("fields") or {})

    def _add_link(self, body: JSON) -> FakeLink:
        name = (body.get("type") or {}).get("name")
        if name not in LINK_TYPES:
            raise JiraApiError(404, f"No issue link type with name '{name}' found.")
        inward = self._issue(str((body.get("inwardIssue") or {}).get("key")))
        outward = self._issue(str((body.get("outwardIssue") or {}).get("key")))
        link = FakeLink(self._next_id(), name, inward.key, outward.key)
        self.links.append(link)
        return link

    def _apply(self, issue: FakeIssue, fields: JSON) -> None:
        """Validate every field first, then change the issue: a 400 changes nothing."""
        errors: dict[str, str] = {}
        changes: JSON = {}
        comps = self.projects[issue.project]["comps"]
        for name, value in fields.items():
            changes[name] = value
            if name == "summary":
                if not isinstance(value, str) or not value.strip():
                    errors[name] = "You must specify a summary of the issue."
                elif "\n" in value or "\r" in value:
                    errors[name] = "The summary is invalid because it contains newline characters."
                elif len(value) > 255:
                    errors[name] = "Summary must be less than 255 characters."
            elif name == "labels":
                if bad := [v for v in value or [] if re.search(r"\s", v)]:
                    errors[name] = f"The label '{bad[0]}' contains spaces which is invalid."
            elif name == "components":
                ids = {cid: c for c, cid in comps.items()}
                changes[name] = [c.get("name") or ids.get(c.get("id")) for c in value or []]
                if unknown := [n for n in changes[name] if n not in comps]:
                    errors[name] = f"Component name '{unknown[0]}' is not valid"
            elif name == "assignee":
                changes[name] = (value or {}).get("accountId" if self.cloud else "name")
                if value is not None and not any(u.ref == changes[name] for u in self.users):
                    errors[name] = f"User '{changes[name] or value}' does not exist."
            elif name == "duedate":
                try:
                    _ = value is None or date.fromisoformat(value)
                except (TypeError, ValueError):
                    errors[name] = f"Error parsing date string: {value}"
            elif name == "parent":
                key = str((value or {}).get("key") or (value or {}).get("id"))
                changes[name] = next(
                    (i.key for i in self.issues.values() if key in (i.key, str(i.id))), None
                )
                if changes[name] is None:
                    errors[name] = f"Could not find issue by id or key: {key}"
            elif name != "description":
                why = "It is not on the appropriate screen, or unknown."
                errors[name] = f"Field '{name}' cannot be set. {why}"
        if errors:
            raise JiraApiError(400, errors=errors)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        for name, value in changes.items():
            setattr(issue, name, value)
        issue.created, issue.updated = issue.created or now, now

    # -- JQL ------------------------------------------------------------------------------

    def _jql(self, jql: str) -> list[FakeIssue]:
        parts = re.fullmatch(r"(.*?)(?:\s+ORDER\s+BY\s+(.*))?", jql.strip(), re.I | re.S)
        where, order = (parts[1], parts[2] or "") if parts else (jql, "")
        found = sorted(self.issues.values(), key=lambda i: i.id)
        pos = 0
        while pos < len(where):
            m = _CLAUSE.match(where, pos)
            if not m or m.end() == pos:
                raise JiraApiError(400, f"Error in the JQL Query: cannot parse '{where[pos:]}'")
            name, raw = m[1].lower(), m[2]
            value = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
            if name not in _JQL_FIELDS:
                raise JiraApiError(
                    400, f"Field '{m[1]}' does not exist or you do not have permission to view it."
                )
            if name == "project" and self._project(value) is None:
                raise JiraApiError(
                    400, f"The value '{value}' does not exist for the field 'project'."
                )
            found = [i for i in found if _jql_match(i, name, value)]
            pos = m.end()
        return found[::-1] if re.search(r"\bDESC\b", order, re.I) else found


def _jql_match(i: FakeIssue, name: str, value: str) -> bool:
    if name == "labels":
        return value in i.labels
    if name in ("key", "issuekey"):
        return i.key == value
    return bool(getattr(i, name) == value)  # project, issuetype, parent
