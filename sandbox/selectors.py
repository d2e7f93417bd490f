"""Label and field selectors, in the query-string syntax and as LabelSelector objects."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.errors import bad_request

_SET_EXPR = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_EXPR = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return value == self.values[0]
        if self.op == "!=":
            return value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return value not in self.values
        if self.op == "exists":
            return present
        return not present


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``in (a,b)`` value lists."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text:
        return []
    reqs: list[Requirement] = []
    for part in _split_top_level(text):
        eq = _EQ_EXPR.match(part)
        if eq:
            op = "!=" if eq.group(2) == "!=" else "="
            reqs.append(Requirement(eq.group(1), op, (eq.group(3),)))
            continue
        st = _SET_EXPR.match(part)
        if not st:
            raise bad_request(f"unable to parse requirement: {part.strip()!r}")
        neg, key, op, values = st.groups()
        if op:
            reqs.append(Requirement(key, op, tuple(v.strip() for v in values.split(","))))
        else:
            reqs.append(Requirement(key, "!" if neg else "exists"))
    return reqs


def labels_match(reqs: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    return all(r.matches(labels or {}) for r in reqs)


def selector_requirements(selector: Mapping[str, Any] | None) -> list[Requirement]:
    """A LabelSelector object (matchLabels/matchExpressions) as requirements."""
    if not selector:
        return []
    reqs = [Requirement(k, "=", (v,)) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        reqs.append(Requirement(expr["key"], ops[expr["operator"]],
                                tuple(expr.get("values") or ())))
    return reqs


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """The query-string form, as ``kubectl get -o wide`` shows in its SELECTOR column."""
    parts = []
    for req in selector_requirements(selector):
        if req.op == "=":
            parts.append(f"{req.key}={req.values[0]}")
        elif req.op in ("in", "notin"):
            parts.append(f"{req.key} {req.op} ({','.join(req.values)})")
        else:
            parts.append(req.key if req.op == "exists" else f"!{req.key}")
    return ",".join(parts)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return ""
        current = current.get(part)
    return "" if current is None else str(current)


def parse_field_selector(text: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """Field selectors support = / == / != on any dotted path (metadata.name, status.phase)."""
    if not text:
        return lambda _obj: True
    checks: list[tuple[str, bool, str]] = []
    for part in text.split(","):
        if "!=" in part:
            key, value = part.split("!=", 1)
            checks.append((key.strip(), False, value.strip()))
        elif "=" in part:
            key, value = part.split("==", 1) if "==" in part else part.split("=", 1)
            checks.append((key.strip(), True, value.strip()))
        else:
            raise bad_request(f"invalid field selector: {part!r}")

    def match(obj: Mapping[str, Any]) -> bool:
        return all((_field_value(obj, k) == v) == eq for k, eq, v in checks)

    return match
