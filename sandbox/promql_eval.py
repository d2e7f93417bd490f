"""PromQL evaluation over the in-memory TSDB, at one instant or over a range."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

from sandbox.promql_ast import (
    ARITHMETIC_OPS,
    COMPARISON_OPS,
    Aggregate,
    Binary,
    Call,
    EvalError,
    MatrixSelector,
    Node,
    NumberLiteral,
    Paren,
    StringLiteral,
    Unary,
    VectorMatching,
    VectorSelector,
)
from sandbox.promql_functions import AGGREGATIONS, FUNCTIONS, CallContext
from sandbox.promql_values import (
    Labels,
    Matrix,
    RangeSeries,
    Sample,
    Signature,
    Value,
    Vector,
    format_labels,
    signature,
    without_name,
)
from sandbox.tsdb import TSDB

LOOKBACK_SECONDS = 300.0


def _pow(a: float, b: float) -> float:
    try:
        return float(a**b)
    except (OverflowError, ZeroDivisionError):
        return math.inf
    except ValueError:
        return math.nan


def _div(a: float, b: float) -> float:
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * (
            math.copysign(1, b))
    return a / b


def _mod(a: float, b: float) -> float:
    return math.nan if b == 0 else math.fmod(a, b)


_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": _div, "%": _mod,
    "^": _pow, "atan2": math.atan2,
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
    ">=": operator.ge, "<=": operator.le,
}


class Evaluator:
    def __init__(self, tsdb: TSDB) -> None:
        self._tsdb = tsdb

    def instant(self, node: Node, at: float) -> Value:
        return self._eval(node, at)

    def range(self, node: Node, start: float, end: float, step: float) -> Matrix:
        """Evaluate at every step and stitch the results into series."""
        series: dict[Signature, RangeSeries] = {}
        steps = math.floor((end - start) / step + 1e-9) + 1
        for i in range(steps):
            at = start + i * step
            value = self._eval(node, at)
            samples = [Sample({}, value)] if isinstance(value, float) else value
            for sample in samples:
                assert isinstance(sample, Sample)
                key = tuple(sorted(sample.labels.items()))
                series.setdefault(key, RangeSeries(sample.labels, [])).points.append(
                    (at, sample.value))
        return list(series.values())

    def _eval(self, node: Node, at: float) -> Value:
        if isinstance(node, NumberLiteral):
            return node.value
        if isinstance(node, StringLiteral):
            return node.value
        if isinstance(node, Paren):
            return self._eval(node.expr, at)
        if isinstance(node, VectorSelector):
            return self._select(node, at)
        if isinstance(node, MatrixSelector):
            return self._select_range(node, at)
        if isinstance(node, Unary):
            value = self._eval(node.expr, at)
            if node.op == "+":
                return value
            if isinstance(value, float):
                return -value
            return [Sample(without_name(s.labels), -s.value) for s in _vector(value)]
        if isinstance(node, Call):
            args = [self._eval(arg, at) for arg in node.args]
            return FUNCTIONS[node.func].impl(CallContext(at, node.args), args)
        if isinstance(node, Aggregate):
            return self._aggregate(node, at)
        if isinstance(node, Binary):
            return self._binary(node, at)
        raise EvalError(f"unsupported expression {type(node).__name__}")

    def _select(self, node: VectorSelector, at: float) -> Vector:
        out: Vector = []
        for series in self._tsdb.candidates(node.name):
            if all(m.matches(series.labels.get(m.name)) for m in node.matchers):
                latest = series.latest(at - node.offset, LOOKBACK_SECONDS)
                if latest is not None:
                    out.append(Sample(dict(series.labels), latest[1]))
        return out

    def _select_range(self, node: MatrixSelector, at: float) -> Matrix:
        end = at - node.vector.offset
        out: Matrix = []
        for series in self._tsdb.candidates(node.vector.name):
            if all(m.matches(series.labels.get(m.name)) for m in node.vector.matchers):
                points = series.window(end - node.range, end)
                if points:
                    out.append(RangeSeries(dict(series.labels), points))
        return out

    def _aggregate(self, node: Aggregate, at: float) -> Vector:
        samples = _vector(self._eval(node.expr, at))
        param = self._eval(node.param, at) if node.param is not None else None
        groups: dict[Signature, tuple[Labels, list[Sample]]] = {}
        for sample in samples:
            if node.without:
                labels = {k: v for k, v in sample.labels.items()
                          if k not in node.grouping and k != "__name__"}
            else:
                labels = {k: v for k, v in sample.labels.items() if k in node.grouping}
            key = tuple(sorted(labels.items()))
            groups.setdefault(key, (labels, []))[1].append(sample)
        out: Vector = []
        for labels, members in groups.values():
            values = [s.value for s in members]
            if node.op in ("topk", "bottomk"):
                k = int(_scalar(param))
                ranked = sorted(members, key=lambda s: s.value, reverse=node.op == "topk")
                out.extend(ranked[: max(k, 0)])
            elif node.op == "quantile":
                out.append(Sample(labels, _quantile(_scalar(param), values)))
            elif node.op in ("min", "max"):
                real = [v for v in values if not math.isnan(v)]
                out.append(Sample(labels, AGGREGATIONS[node.op](real) if real else math.nan))
            else:
                out.append(Sample(labels, AGGREGATIONS[node.op](values)))
        return out

    def _binary(self, node: Binary, at: float) -> Value:
        lhs = self._eval(node.lhs, at)
        rhs = self._eval(node.rhs, at)
        if node.op in ("and", "or", "unless"):
            return _set_op(node, _vector(lhs), _vector(rhs))
        if isinstance(lhs, float) and isinstance(rhs, float):
            if node.op in COMPARISON_OPS:
                return 1.0 if _COMPARE[node.op](lhs, rhs) else 0.0
            return _ARITH[node.op](lhs, rhs)
        if isinstance(lhs, float) or isinstance(rhs, float):
            return _vector_scalar(node, lhs, rhs)
        return _vector_vector(node, _vector(lhs), _vector(rhs))


def _vector(value: Value) -> Vector:
    if not isinstance(value, list):
        raise EvalError("expected an instant vector")
    return value  # type: ignore[return-value]


def _scalar(value: Value | None) -> float:
    if not isinstance(value, float):
        raise EvalError("expected a scalar parameter")
    return value


def _quantile(q: float, values: list[float]) -> float:
    if not values or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = max(0, math.floor(rank))
    high = min(len(ordered) - 1, low + 1)
    weight = rank - math.floor(rank)
    return ordered[low] * (1 - weight) + ordered[high] * weight


def _apply(node: Binary, left: float, right: float) -> tuple[float, bool]:
    """The result value and whether the sample is kept (comparisons filter)."""
    if node.op in ARITHMETIC_OPS:
        return _ARITH[node.op](left, right), True
    holds = _COMPARE[node.op](left, right)
    if node.return_bool:
        return (1.0 if holds else 0.0), True
    return left, holds


def _vector_scalar(node: Binary, lhs: Value, rhs: Value) -> Vector:
    scalar_left = isinstance(lhs, float)
    vector = _vector(rhs if scalar_left else lhs)
    scalar = lhs if scalar_left else rhs
    assert isinstance(scalar, float)
    drop_name = node.op in ARITHMETIC_OPS or node.return_bool
    out: Vector = []
    for sample in vector:
        left, right = (scalar, sample.value) if scalar_left else (sample.value, scalar)
        value, keep = _apply(node, left, right)
        if node.op in COMPARISON_OPS and not node.return_bool:
            value = sample.value  # A filter keeps the vector's own value.
        if keep:
            out.append(Sample(without_name(sample.labels) if drop_name else sample.labels, value))
    return out


def _vector_vector(node: Binary, lhs: Vector, rhs: Vector) -> Vector:
    m = node.matching
    if m.card == "one-to-many":
        one, many = lhs, rhs
    else:
        one, many = rhs, lhs
    one_by_sig: dict[Signature, Sample] = {}
    for sample in one:
        sig = signature(sample.labels, m.labels, m.on)
        if sig in one_by_sig:
            side = "left" if m.card == "one-to-many" else "right"
            raise EvalError(f"found duplicate series for the match group {format_labels(dict(sig))}"
                            f" on the {side} hand-side of the operation: "
                            f"[{format_labels(sample.labels)}, "
                            f"{format_labels(one_by_sig[sig].labels)}];many-to-many matching "
                            "not allowed: matching labels must be unique on one side")
        one_by_sig[sig] = sample
    drop_name = node.op in ARITHMETIC_OPS or node.return_bool
    out: Vector = []
    matched: set[Signature] = set()
    for sample in many:
        sig = signature(sample.labels, m.labels, m.on)
        partner = one_by_sig.get(sig)
        if partner is None:
            continue
        left, right = (partner, sample) if m.card == "one-to-many" else (sample, partner)
        value, keep = _apply(node, left.value, right.value)
        if not keep:
            continue
        if m.card == "one-to-one":
            if sig in matched:
                raise EvalError("multiple matches for labels: many-to-one matching must be "
                                "explicit (group_left/group_right)")
            matched.add(sig)
        out.append(Sample(_result_labels(m, sample, partner, drop_name), value))
    return out


def _result_labels(m: VectorMatching, many: Sample, one: Sample, drop_name: bool) -> Labels:
    labels = without_name(many.labels) if drop_name else dict(many.labels)
    if m.card == "one-to-one":
        if m.on:
            labels = {k: v for k, v in labels.items() if k in m.labels}
        else:
            labels = {k: v for k, v in labels.items() if k not in m.labels}
    for name in m.include:
        if name in one.labels:
            labels[name] = one.labels[name]
        else:
            labels.pop(name, None)
    return labels


def _set_op(node: Binary, lhs: Vector, rhs: Vector) -> Vector:
    m = node.matching
    rhs_sigs = {signature(s.labels, m.labels, m.on) for s in rhs}
    if node.op == "and":
        return [s for s in lhs if signature(s.labels, m.labels, m.on) in rhs_sigs]
    if node.op == "unless":
        return [s for s in lhs if signature(s.labels, m.labels, m.on) not in rhs_sigs]
    lhs_sigs = {signature(s.labels, m.labels, m.on) for s in lhs}
    return lhs + [s for s in rhs if signature(s.labels, m.labels, m.on) not in lhs_sigs]

