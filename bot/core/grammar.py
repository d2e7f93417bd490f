"""Command grammar as data.

A pattern such as

    /deploy <service> <version> [to <env>] [strategy=<s:rolling|canary> ] [--dry-run]

describes one form of a command: literal words, `<name>` (one word),
`<name...>` (the rest), `<n:int>`, `<x:a|b|c>` (one of), optional `[...]`
groups, and order-free `key=<name>` options and `--flags`. Parsing is
independent of chat, so every command's grammar is unit-testable.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

# Slack clients turn quotes into typographic ones; shlex needs plain ones.
_SMART_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
_CAPTURE = re.compile(r"^<([a-z_][a-z0-9_]*)(\.\.\.)?(?::([^>]+))?>$")


class UsageError(Exception):
    """Bad input; the message says what was wrong, usage what would be right."""

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


@dataclass(frozen=True)
class _Literal:
    word: str


@dataclass(frozen=True)
class _Capture:
    name: str
    rest: bool = False
    kind: str | None = None  # "int" or "a|b|c"

    def convert(self, raw: str) -> Any:
        if self.kind == "int":
            try:
                return int(raw)
            except ValueError:
                raise UsageError(f"{self.name} must be a whole number, not '{raw}'") from None
        if self.kind:
            choices = self.kind.split("|")
            if raw.lower() not in choices:
                raise UsageError(f"{self.name} must be one of {', '.join(choices)}, not '{raw}'")
            return raw.lower()
        return raw


@dataclass(frozen=True)
class _Optional:
    elements: tuple[_Element, ...]


_Element = _Literal | _Capture | _Optional


@dataclass
class Parsed:
    args: dict[str, Any] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)

    def get(self, name: str, default: Any = None) -> Any:
        return self.args.get(name, default)

    def flag(self, name: str) -> bool:
        return name in self.flags


class Pattern:
    def __init__(self, text: str) -> None:
        self.text = text
        tokens = text.replace("[", " [ ").replace("]", " ] ").split()
        self.options: dict[str, _Capture] = {}
        self.flags: set[str] = set()
        self.elements, end = self._parse(tokens, 0)
        if end != len(tokens):
            raise ValueError(f"unbalanced ']' in pattern {text!r}")

    def _parse(self, tokens: list[str], i: int) -> tuple[tuple[_Element, ...], int]:
        out: list[_Element] = []
        while i < len(tokens):
            tok = tokens[i]
            if tok == "]":
                return tuple(out), i
            if tok == "[":
                inner, i = self._parse(tokens, i + 1)
                if i >= len(tokens) or tokens[i] != "]":
                    raise ValueError(f"unclosed '[' in pattern {self.text!r}")
                # A group holding only options/flags is order-free anyway.
                if inner:
                    out.append(_Optional(inner))
            elif tok.startswith("--"):
                self.flags.add(tok[2:])
            elif "=" in tok and tok.split("=", 1)[1].startswith("<"):
                key, cap = tok.split("=", 1)
                self.options[key] = _capture(cap, self.text)
            elif tok.startswith("<"):
                out.append(_capture(tok, self.text))
            else:
                out.append(_Literal(tok.lower()))
            i += 1
        return tuple(out), i

    @property
    def literal_prefix(self) -> list[str]:
        words = []
        for el in self.elements:
            if not isinstance(el, _Literal):
                break
            words.append(el.word)
        return words

    def match(self, tokens: list[str]) -> tuple[Parsed | None, int]:
        """Match tokens; returns (result, how far positional matching got)."""
        parsed = Parsed()
        positional: list[str] = []
        for tok in tokens:
            key, sep, value = tok.partition("=")
            if sep and key.lower() in self.options:
                option = self.options[key.lower()]
                parsed.args[option.name] = option.convert(value)
            elif tok.startswith("--") and len(tok) > 2:
                if tok[2:].lower() not in self.flags:
                    raise UsageError(f"unknown option {tok}")
                parsed.flags.add(tok[2:].lower())
            else:
                positional.append(tok)
        best = [0]
        captures = _match(self.elements, positional, 0, {}, best)
        if captures is None:
            return None, best[0]
        parsed.args.update(captures)
        return parsed, best[0]


def _capture(token: str, pattern: str) -> _Capture:
    m = _CAPTURE.match(token)
    if not m:
        raise ValueError(f"bad placeholder {token!r} in pattern {pattern!r}")
    return _Capture(m.group(1), bool(m.group(2)), m.group(3))


def _match(
    elements: tuple[_Element, ...], tokens: list[str], i: int, caps: dict[str, Any], best: list[int]
) -> dict[str, Any] | None:
    best[0] = max(best[0], i)
    if not elements:
        return caps if i == len(tokens) else None
    head, rest = elements[0], elements[1:]
    if isinstance(head, _Optional):
        with_group = _match(head.elements + rest, tokens, i, dict(caps), best)
        return with_group if with_group is not None else _match(rest, tokens, i, caps, best)
    if i >= len(tokens):
        return None
    if isinstance(head, _Literal):
        if tokens[i].lower() != head.word:
            return None
        return _match(rest, tokens, i + 1, caps, best)
    if head.rest:
        # Greedy, but leave room for what follows (e.g. "<title...> [in <env>]").
        for end in range(len(tokens), i, -1):
            found = _match(rest, tokens, end, {**caps, head.name: " ".join(tokens[i:end])}, best)
            if found is not None:
                return found
        return None
    return _match(rest, tokens, i + 1, {**caps, head.name: head.convert(tokens[i])}, best)


def tokenize(text: str) -> list[str]:
    try:
        return shlex.split(text.translate(_SMART_QUOTES))
    except ValueError as exc:  # e.g. "No closing quotation"
        raise UsageError(f"cannot read the arguments: {str(exc).lower()}") from None
