"""PromQL parser: precedence climbing over the tokens, with type checking.

Supports the subset the evaluator implements; anything else is refused with a
Prometheus-style ``parse error`` that names the unsupported construct.
"""

from __future__ import annotations

import math
import re

from sandbox import timeutil
from sandbox.promql_ast import (
    COMPARISON_OPS,
    SET_OPS,
    Aggregate,
    Binary,
    Call,
    Matcher,
    MatrixSelector,
    Node,
    NumberLiteral,
    Paren,
    PromQLError,
    StringLiteral,
    Unary,
    ValueType,
    VectorMatching,
    VectorSelector,
)
from sandbox.promql_functions import AGGREGATIONS, FUNCTIONS
from sandbox.promql_lexer import Token, error_at, tokenize

# Binary operator precedence; "^" is the only right-associative one.
_PRECEDENCE = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, "<": 3, ">": 3, "<=": 3,
               ">=": 3, "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6}
_UNSUPPORTED_KEYWORDS = {"count_values": "aggregation count_values",
                         "limitk": "aggregation limitk", "limit_ratio": "aggregation limit_ratio"}


class Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.pos = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def next(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def error(self, message: str, token: Token | None = None) -> PromQLError:
        return error_at(self.query, (token or self.peek()).pos, message)

    def expect(self, text: str) -> Token:
        token = self.next()
        if token.text != text or token.kind not in ("OP", "IDENT"):
            shown = "end of input" if token.kind == "EOF" else repr(token.text)
            raise self.error(f"unexpected {shown}, expected {text!r}", token)
        return token

    def parse(self) -> Node:
        if self.peek().kind == "EOF":
            raise self.error("no expression found in input")
        node = self.expression(0)
        if self.peek().kind != "EOF":
            raise self.error(f"unexpected {self.peek().text!r}")
        return node

    def _binary_op(self) -> str | None:
        token = self.peek()
        if token.kind == "OP" and token.text in _PRECEDENCE:
            return token.text
        if token.kind == "IDENT" and token.text.lower() in ("and", "or", "unless", "atan2"):
            return token.text.lower()
        return None

    def expression(self, min_prec: int) -> Node:
        lhs = self.unary()
        while (op := self._binary_op()) is not None and _PRECEDENCE[op] >= min_prec:
            op_token = self.next()
            return_bool = False
            if self.peek().kind == "IDENT" and self.peek().text == "bool":
                if op not in COMPARISON_OPS:
                    raise self.error("bool modifier can only be used on comparison operators")
                self.next()
                return_bool = True
            matching = self._matching(op)
            prec = _PRECEDENCE[op]
            rhs = self.expression(prec if op == "^" else prec + 1)
            lhs = self._check_binary(Binary(op, lhs, rhs, return_bool, matching), op_token)
        return lhs

    def _matching(self, op: str) -> VectorMatching:
        matching = VectorMatching()
        if self.peek().kind != "IDENT" or self.peek().text not in ("on", "ignoring"):
            if op in SET_OPS:
                matching.card = "many-to-many"
            return matching
        matching.on = self.next().text == "on"
        matching.labels = self._label_list()
        if self.peek().kind == "IDENT" and self.peek().text in ("group_left", "group_right"):
            if op in SET_OPS:
                raise self.error("no grouping allowed for \"and\", \"or\", \"unless\" "
                                 "operations")
            side = self.next().text
            matching.card = "many-to-one" if side == "group_left" else "one-to-many"
            if self.peek().text == "(":
                matching.include = self._label_list()
        elif op in SET_OPS:
            matching.card = "many-to-many"
        return matching

    def _label_list(self) -> list[str]:
        self.expect("(")
        labels: list[str] = []
        while self.peek().text != ")":
            token = self.next()
            if token.kind != "IDENT":
                raise self.error(f"unexpected {token.text!r} in grouping opts, expected label",
                                 token)
            labels.append(token.text)
            if self.peek().text == ",":
                self.next()
            elif self.peek().text != ")":
                raise self.error(f"unexpected {self.peek().text!r} in grouping opts, "
                                 "expected \",\" or \")\"")
        self.next()
        return labels

    def _check_binary(self, node: Binary, token: Token) -> Binary:
        for side in (node.lhs, node.rhs):
            if side.type not in (ValueType.SCALAR, ValueType.VECTOR):
                raise self.error("binary expression must contain only scalar and instant "
                                 "vector types", token)
        both_scalar = node.lhs.type == node.rhs.type == ValueType.SCALAR
        if node.op in COMPARISON_OPS and both_scalar and not node.return_bool:
            raise self.error("comparisons between scalars must use BOOL modifier", token)
        if node.op in SET_OPS and ValueType.SCALAR in (node.lhs.type, node.rhs.type):
            raise self.error(f"set operator \"{node.op}\" not allowed in binary scalar "
                             "expression", token)
        if (node.matching.labels or node.matching.on) and ValueType.SCALAR in (
                node.lhs.type, node.rhs.type):
            raise self.error("vector matching only allowed between instant vectors", token)
        node.type = ValueType.SCALAR if both_scalar else ValueType.VECTOR
        return node

    def unary(self) -> Node:
        token = self.peek()
        if token.kind == "OP" and token.text in ("+", "-"):
            self.next()
            operand = self.expression(_PRECEDENCE["^"])
            if operand.type not in (ValueType.SCALAR, ValueType.VECTOR):
                raise self.error("unary expression only allowed on expressions of type scalar "
                                 "or instant vector", token)
            if isinstance(operand, NumberLiteral):
                return NumberLiteral(-operand.value if token.text == "-" else operand.value)
            return Unary(token.text, operand, type=operand.type)
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.peek()
            if token.text == "[" and token.kind == "OP":
                node = self._range(node)
            elif token.kind == "IDENT" and token.text == "offset":
                self.next()
                seconds = self._duration()
                target = node.vector if isinstance(node, MatrixSelector) else node
                if not isinstance(target, VectorSelector):
                    raise self.error("offset modifier must be preceded by an instant vector "
                                     "selector or range vector selector", token)
                target.offset = seconds
            elif token.kind == "OP" and token.text == "@":
                raise self.error("unsupported: the @ modifier is not implemented by this "
                                 "server", token)
            else:
                return node

    def _range(self, node: Node) -> Node:
        bracket = self.next()
        seconds = self._duration()
        if self.peek().text == ":":
            raise self.error("unsupported: subqueries are not implemented by this server",
                             bracket)
        self.expect("]")
        if not isinstance(node, VectorSelector):
            raise self.error("ranges only allowed for vector selectors", bracket)
        return MatrixSelector(node, seconds)

    def _duration(self) -> float:
        token = self.next()
        if token.kind != "DURATION":
            raise self.error(f"unexpected {token.text or 'end of input'!r}, expected duration",
                             token)
        return timeutil.parse_duration(token.text)

    def primary(self) -> Node:
        token = self.next()
        if token.kind == "NUMBER":
            return NumberLiteral(_number(token.text))
        if token.kind == "STRING":
            return StringLiteral(token.text)
        if token.kind == "DURATION":
            raise self.error(f"unexpected duration {token.text!r}", token)
        if token.kind == "OP" and token.text == "(":
            inner = self.expression(0)
            self.expect(")")
            return Paren(inner, type=inner.type)
        if token.kind == "OP" and token.text == "{":
            self.pos -= 1
            return self._selector(None)
        if token.kind != "IDENT":
            shown = "end of input" if token.kind == "EOF" else repr(token.text)
            raise self.error(f"unexpected {shown}", token)
        name = token.text
        if name.lower() in ("inf", "nan"):
            return NumberLiteral(math.inf if name.lower() == "inf" else math.nan)
        if name in _UNSUPPORTED_KEYWORDS:
            raise self.error(f"unsupported: {_UNSUPPORTED_KEYWORDS[name]} is not implemented "
                             "by this server", token)
        if name in AGGREGATIONS:
            return self._aggregate(token)
        if self.peek().text == "(" and self.peek().kind == "OP":
            if name not in FUNCTIONS:
                raise self.error(f"unknown function with name {name!r} (unsupported by this "
                                 "server)", token)
            return self._call(token)
        return self._selector(name)

    def _selector(self, name: str | None) -> VectorSelector:
        matchers: list[Matcher] = []
        if self.peek().text == "{" and self.peek().kind == "OP":
            self.next()
            while self.peek().text != "}":
                label = self.next()
                if label.kind not in ("IDENT", "STRING"):
                    raise self.error(f"unexpected {label.text!r} in label matching, expected "
                                     "label", label)
                op = self.next()
                if op.text not in ("=", "!=", "=~", "!~") or op.kind != "OP":
                    raise self.error(f"unexpected {op.text!r} in label matching, expected "
                                     "label matching operator", op)
                value = self.next()
                if value.kind != "STRING":
                    raise self.error(f"unexpected {value.text!r} in label matching, expected "
                                     "string", value)
                matchers.append(_matcher(self, label.text, op.text, value))
                if self.peek().text == ",":
                    self.next()
                elif self.peek().text != "}":
                    raise self.error(f"unexpected {self.peek().text!r} in label matching, "
                                     "expected \",\" or \"}\"")
            self.next()
        if name is None and not any(not m.matches("") for m in matchers):
            raise self.error("vector selector must contain at least one non-empty matcher")
        if name is not None and any(m.name == "__name__" for m in matchers):
            raise self.error(f"metric name must not be set twice: {name!r}")
        return VectorSelector(name, matchers)

    def _call(self, token: Token) -> Call:
        self.expect("(")
        args: list[Node] = []
        while self.peek().text != ")":
            args.append(self.expression(0))
            if self.peek().text == ",":
                self.next()
            elif self.peek().text != ")":
                raise self.error(f"unexpected {self.peek().text!r} in function call")
        self.next()
        spec = FUNCTIONS[token.text]
        required = [t for t in spec.arg_types if t is not None]
        optional = spec.optional
        if not len(required) - optional <= len(args) <= len(required):
            raise self.error(f"expected {len(required)} argument(s) in call to "
                             f"{token.text!r}, got {len(args)}", token)
        for arg, wanted in zip(args, required, strict=False):
            if arg.type != wanted:
                raise self.error(f"expected type {wanted.description} in call to function "
                                 f"{token.text!r}, got {arg.type.description}", token)
        return Call(token.text, args, type=spec.returns)

    def _aggregate(self, token: Token) -> Aggregate:
        grouping: list[str] = []
        without = False
        if self.peek().kind == "IDENT" and self.peek().text in ("by", "without"):
            without = self.next().text == "without"
            grouping = self._label_list()
        self.expect("(")
        param: Node | None = None
        if token.text in ("topk", "bottomk", "quantile"):
            param = self.expression(0)
            self.expect(",")
        expr = self.expression(0)
        self.expect(")")
        if self.peek().kind == "IDENT" and self.peek().text in ("by", "without"):
            without = self.next().text == "without"
            grouping = self._label_list()
        if expr.type != ValueType.VECTOR:
            raise self.error(f"expected type instant vector in aggregation expression, got "
                             f"{expr.type.description}", token)
        if param is not None and param.type != ValueType.SCALAR:
            raise self.error(f"expected type scalar in aggregation parameter, got "
                             f"{param.type.description}", token)
        return Aggregate(token.text, expr, param, grouping, without)


def _number(text: str) -> float:
    return float(int(text, 16)) if text.lower().startswith("0x") else float(text)


def _matcher(parser: Parser, label: str, op: str, value: Token) -> Matcher:
    pattern = None
    if op in ("=~", "!~"):
        try:
            pattern = re.compile(value.text)
        except re.error as exc:
            raise parser.error(f"invalid regular expression {value.text!r}: {exc}",
                               value) from exc
    return Matcher(label, op, value.text, pattern)


def parse(query: str) -> Node:
    return Parser(query).parse()
