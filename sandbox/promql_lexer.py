"""PromQL tokenizer."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sandbox.promql_ast import PromQLError

_OPERATORS = ("==", "!=", "<=", ">=", "=~", "!~", "+", "-", "*", "/", "%", "^", "<", ">", "=",
              "(", ")", "{", "}", "[", "]", ",", ":", "@")
# Digits with units, possibly repeated (1h30m), not running into an identifier.
_DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+(?!\w)")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a",
            "b": "\b", "f": "\f", "v": "\v"}


@dataclass(frozen=True)
class Token:
    kind: str  # NUMBER, DURATION, STRING, IDENT, OP, EOF
    text: str
    pos: int


def error_at(query: str, pos: int, message: str) -> PromQLError:
    line = query.count("\n", 0, pos) + 1
    column = pos - (query.rfind("\n", 0, pos) + 1) + 1
    return PromQLError(f"{line}:{column}: parse error: {message}")


def _is_ident_start(ch: str) -> bool:
    return ch.isalpha() or ch in "_:"


def _is_ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_:"


def _read_string(query: str, start: int) -> tuple[str, int]:
    quote = query[start]
    i, out = start + 1, list[str]()
    while i < len(query):
        ch = query[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\" and quote != "`":
            i += 1
            if i >= len(query):
                break
            esc = query[i]
            if esc in _ESCAPES:
                out.append(_ESCAPES[esc])
            else:
                raise error_at(query, i, f"unknown escape sequence {esc!r}")
        elif ch == "\n" and quote != "`":
            break
        else:
            out.append(ch)
        i += 1
    raise error_at(query, start, "unterminated quoted string")


def _read_number(query: str, start: int) -> tuple[Token, int]:
    duration = _DURATION.match(query, start)
    if duration:
        return Token("DURATION", duration.group(), start), duration.end()
    number = _NUMBER.match(query, start)
    assert number is not None  # The caller saw a digit or ".digit".
    return Token("NUMBER", number.group(), start), number.end()


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(query):
        ch = query[i]
        if ch.isspace():
            i += 1
        elif ch == "#":
            while i < len(query) and query[i] != "\n":
                i += 1
        elif ch.isdigit() or (ch == "." and i + 1 < len(query) and query[i + 1].isdigit()):
            token, i = _read_number(query, i)
            tokens.append(token)
        elif ch in "\"'`":
            text, end = _read_string(query, i)
            tokens.append(Token("STRING", text, i))
            i = end
        elif ch == ":" and tokens and tokens[-1].kind == "DURATION":
            # Inside brackets ":" separates a subquery's range and step.
            tokens.append(Token("OP", ":", i))
            i += 1
        elif _is_ident_start(ch):
            j = i + 1
            while j < len(query) and _is_ident_char(query[j]):
                j += 1
            tokens.append(Token("IDENT", query[i:j], i))
            i = j
        else:
            op = next((o for o in _OPERATORS if query.startswith(o, i)), None)
            if op is None:
                raise error_at(query, i, f"unexpected character: {ch!r}")
            tokens.append(Token("OP", op, i))
            i += len(op)
    tokens.append(Token("EOF", "", len(query)))
    return tokens
