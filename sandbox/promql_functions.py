"""PromQL functions and aggregation operators supported by the sandbox."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.promql_ast import Node, ValueType, VectorSelector
from sandbox.promql_values import Labels, Matrix, Sample, Value, Vector, without_name

S, V, M = ValueType.SCALAR, ValueType.VECTOR, ValueType.MATRIX


@dataclass
class CallContext:
    time: float
    nodes: list[Node]


Impl = Callable[[CallContext, list[Value]], Value]


@dataclass(frozen=True)
class FunctionSpec:
    arg_types: tuple[ValueType | None, ...]
    returns: ValueType
    impl: Impl
    optional: int = 0  # how many trailing arguments may be left out


def _extrapolated(ctx: CallContext, matrix: Matrix, is_counter: bool, is_rate: bool) -> Vector:
    """Prometheus' extrapolation: scale the observed increase to the whole window."""
    from sandbox.promql_ast import MatrixSelector

    node = ctx.nodes[0]
    assert isinstance(node, MatrixSelector)
    range_end = ctx.time - node.vector.offset
    range_start = range_end - node.range
    out: Vector = []
    for series in matrix:
        points = series.points
        if len(points) < 2:
            continue
        result = points[-1][1] - points[0][1]
        if is_counter:
            for (_, prev), (_, cur) in itertools.pairwise(points):
                if cur < prev:
                    result += prev  # A counter reset: the counter restarted from zero.
        first_t, first_v = points[0]
        last_t = points[-1][0]
        sampled = last_t - first_t
        to_start = first_t - range_start
        to_end = range_end - last_t
        average = sampled / (len(points) - 1)
        if is_counter and result > 0 and first_v >= 0:
            to_zero = sampled * (first_v / result)
            to_start = min(to_start, to_zero)
        threshold = average * 1.1
        interval = sampled
        interval += to_start if to_start < threshold else average / 2
        interval += to_end if to_end < threshold else average / 2
        result *= interval / sampled
        if is_rate:
            result /= node.range
        out.append(Sample(without_name(series.labels), result))
    return out


def _rate(ctx: CallContext, args: list[Value]) -> Value:
    return _extrapolated(ctx, _m(args[0]), True, True)


def _increase(ctx: CallContext, args: list[Value]) -> Value:
    return _extrapolated(ctx, _m(args[0]), True, False)


def _delta(ctx: CallContext, args: list[Value]) -> Value:
    return _extrapolated(ctx, _m(args[0]), False, False)


def _irate(_ctx: CallContext, args: list[Value]) -> Value:
    out: Vector = []
    for series in _m(args[0]):
        if len(series.points) < 2:
            continue
        (t0, v0), (t1, v1) = series.points[-2], series.points[-1]
        change = v1 - v0 if v1 >= v0 else v1
        if t1 > t0:
            out.append(Sample(without_name(series.labels), change / (t1 - t0)))
    return out


def _over_time(reduce: Callable[[list[float]], float]) -> Impl:
    def impl(_ctx: CallContext, args: list[Value]) -> Value:
        return [Sample(without_name(s.labels), reduce([v for _, v in s.points]))
                for s in _m(args[0]) if s.points]
    return impl


def _m(value: Value) -> Matrix:
    assert isinstance(value, list)
    return value  # type: ignore[return-value]


def _v(value: Value) -> Vector:
    assert isinstance(value, list)
    return value  # type: ignore[return-value]


def _s(value: Value) -> float:
    assert isinstance(value, float | int)
    return float(value)


def _bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets)
    if not buckets or not math.isinf(buckets[-1][0]) or len(buckets) < 2:
        return math.nan
    # Scrapes of different buckets can disagree slightly; force monotonic counts.
    fixed: list[tuple[float, float]] = []
    for bound, count in buckets:
        fixed.append((bound, max(count, fixed[-1][1]) if fixed else count))
    total = fixed[-1][1]
    if total == 0:
        return math.nan
    rank = q * total
    index = next(i for i, (_, count) in enumerate(fixed) if count >= rank)
    if index == len(fixed) - 1:
        return fixed[-2][0]
    if index == 0 and fixed[0][0] <= 0:
        return fixed[0][0]
    start, end, count = 0.0, fixed[index][0], fixed[index][1]
    if index > 0:
        start = fixed[index - 1][0]
        count -= fixed[index - 1][1]
        rank -= fixed[index - 1][1]
    return start + (end - start) * (rank / count) if count else start


def _histogram_quantile(_ctx: CallContext, args: list[Value]) -> Value:
    q = _s(args[0])
    groups: dict[tuple[tuple[str, str], ...], tuple[Labels, list[tuple[float, float]]]] = {}
    for sample in _v(args[1]):
        if "le" not in sample.labels:
            continue
        try:
            bound = float(sample.labels["le"])
        except ValueError:
            continue
        labels = {k: v for k, v in without_name(sample.labels).items() if k != "le"}
        key = tuple(sorted(labels.items()))
        groups.setdefault(key, (labels, []))[1].append((bound, sample.value))
    return [Sample(labels, _bucket_quantile(q, buckets)) for labels, buckets in groups.values()]


def _math(fn: Callable[[float], float]) -> Impl:
    def impl(_ctx: CallContext, args: list[Value]) -> Value:
        out: Vector = []
        for s in _v(args[0]):
            try:
                value = fn(s.value)
            except (ValueError, OverflowError):
                value = math.nan
            out.append(Sample(without_name(s.labels), value))
        return out
    return impl


def _clamp(ctx: CallContext, args: list[Value], low: float, high: float) -> Vector:
    if low > high:
        return []
    return [Sample(without_name(s.labels), max(low, min(high, s.value))) for s in _v(args[0])]


def _absent(ctx: CallContext, args: list[Value]) -> Value:
    if _v(args[0]):
        return []
    labels: Labels = {}
    node = ctx.nodes[0]
    if isinstance(node, VectorSelector):
        # absent() keeps the labels an equality matcher pinned down.
        counts: dict[str, int] = {}
        for m in node.matchers:
            counts[m.name] = counts.get(m.name, 0) + 1
        labels = {m.name: m.value for m in node.matchers
                  if m.op == "=" and counts[m.name] == 1 and m.name != "__name__"}
    return [Sample(labels, 1.0)]


def _round(_ctx: CallContext, args: list[Value]) -> Value:
    to = _s(args[1]) if len(args) > 1 else 1.0
    return [Sample(without_name(s.labels), math.floor(s.value / to + 0.5) * to)
            for s in _v(args[0])]


def _scalar(_ctx: CallContext, args: list[Value]) -> Value:
    vector = _v(args[0])
    return vector[0].value if len(vector) == 1 else math.nan


FUNCTIONS: dict[str, FunctionSpec] = {
    "rate": FunctionSpec((M,), V, _rate),
    "irate": FunctionSpec((M,), V, _irate),
    "increase": FunctionSpec((M,), V, _increase),
    "delta": FunctionSpec((M,), V, _delta),
    "avg_over_time": FunctionSpec((M,), V, _over_time(statistics.fmean)),
    "sum_over_time": FunctionSpec((M,), V, _over_time(math.fsum)),
    "min_over_time": FunctionSpec((M,), V, _over_time(min)),
    "max_over_time": FunctionSpec((M,), V, _over_time(max)),
    "count_over_time": FunctionSpec((M,), V, _over_time(lambda vs: float(len(vs)))),
    "last_over_time": FunctionSpec((M,), V, _over_time(lambda vs: vs[-1])),
    "histogram_quantile": FunctionSpec((S, V), V, _histogram_quantile),
    "vector": FunctionSpec((S,), V, lambda _c, a: [Sample({}, _s(a[0]))]),
    "scalar": FunctionSpec((V,), S, _scalar),
    "time": FunctionSpec((), S, lambda c, _a: c.time),
    "clamp_min": FunctionSpec((V, S), V, lambda c, a: _clamp(c, a, _s(a[1]), math.inf)),
    "clamp_max": FunctionSpec((V, S), V, lambda c, a: _clamp(c, a, -math.inf, _s(a[1]))),
    "clamp": FunctionSpec((V, S, S), V, lambda c, a: _clamp(c, a, _s(a[1]), _s(a[2]))),
    "absent": FunctionSpec((V,), V, _absent),
    "abs": FunctionSpec((V,), V, _math(abs)),
    "ceil": FunctionSpec((V,), V, _math(math.ceil)),
    "floor": FunctionSpec((V,), V, _math(math.floor)),
    "exp": FunctionSpec((V,), V, _math(math.exp)),
    "sqrt": FunctionSpec((V,), V, _math(math.sqrt)),
    "ln": FunctionSpec((V,), V, _math(math.log)),
    "log2": FunctionSpec((V,), V, _math(math.log2)),
    "log10": FunctionSpec((V,), V, _math(math.log10)),
    "round": FunctionSpec((V, S), V, _round, optional=1),
    "sort": FunctionSpec((V,), V, lambda _c, a: sorted(_v(a[0]), key=lambda s: s.value)),
    "sort_desc": FunctionSpec((V,), V, lambda _c, a: sorted(_v(a[0]), key=lambda s: -s.value)),
}


def _stddev(values: list[float]) -> float:
    return statistics.pstdev(values)


AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "sum": math.fsum, "avg": statistics.fmean, "min": min, "max": max,
    "count": lambda vs: float(len(vs)), "group": lambda _vs: 1.0,
    "stddev": _stddev, "stdvar": statistics.pvariance,
    # These three select or need a parameter; the evaluator handles them.
    "topk": min, "bottomk": min, "quantile": min,
}
