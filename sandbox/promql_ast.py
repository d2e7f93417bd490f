"""PromQL syntax tree and value types."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum


class ValueType(Enum):
    SCALAR = "scalar"
    VECTOR = "vector"
    MATRIX = "matrix"
    STRING = "string"

    @property
    def description(self) -> str:
        return {"scalar": "scalar", "vector": "instant vector", "matrix": "range vector",
                "string": "string"}[self.value]


class PromQLError(Exception):
    """A query the server refuses: Prometheus answers these as ``bad_data``."""


class EvalError(Exception):
    """A query that parsed but failed to evaluate (``execution`` errors)."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # "=", "!=", "=~", "!~"
    value: str
    pattern: re.Pattern[str] | None = field(default=None, compare=False)

    def matches(self, actual: str | None) -> bool:
        text = actual or ""
        if self.op == "=":
            return text == self.value
        if self.op == "!=":
            return text != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(text) is not None
        return found if self.op == "=~" else not found


class Node:
    type: ValueType = ValueType.SCALAR


@dataclass
class NumberLiteral(Node):
    value: float
    type: ValueType = ValueType.SCALAR


@dataclass
class StringLiteral(Node):
    value: str
    type: ValueType = ValueType.STRING


@dataclass
class VectorSelector(Node):
    name: str | None
    matchers: list[Matcher]
    offset: float = 0.0
    type: ValueType = ValueType.VECTOR


@dataclass
class MatrixSelector(Node):
    vector: VectorSelector
    range: float
    type: ValueType = ValueType.MATRIX


@dataclass
class Call(Node):
    func: str
    args: list[Node]
    type: ValueType = ValueType.VECTOR


@dataclass
class Aggregate(Node):
    op: str
    expr: Node
    param: Node | None
    grouping: list[str]
    without: bool
    type: ValueType = ValueType.VECTOR


@dataclass
class VectorMatching:
    on: bool = False
    labels: list[str] = field(default_factory=list)
    card: str = "one-to-one"  # "many-to-one" (group_left), "one-to-many" (group_right)
    include: list[str] = field(default_factory=list)


@dataclass
class Binary(Node):
    op: str
    lhs: Node
    rhs: Node
    return_bool: bool = False
    matching: VectorMatching = field(default_factory=VectorMatching)
    type: ValueType = ValueType.VECTOR


@dataclass
class Unary(Node):
    op: str
    expr: Node
    type: ValueType = ValueType.VECTOR


@dataclass
class Paren(Node):
    expr: Node
    type: ValueType = ValueType.VECTOR


COMPARISON_OPS = {"==", "!=", ">", "<", ">=", "<="}
SET_OPS = {"and", "or", "unless"}
ARITHMETIC_OPS = {"+", "-", "*", "/", "%", "^", "atan2"}
