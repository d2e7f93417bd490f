"""PromQL parser and evaluator, on hand-made series with known answers."""

from __future__ import annotations

import math

import pytest

from sandbox.promql_ast import EvalError, PromQLError, ValueType
from sandbox.promql_eval import Evaluator
from sandbox.promql_parser import parse
from sandbox.promql_values import Sample, Value
from sandbox.tsdb import TSDB

NOW = 10_000.0


@pytest.fixture
def tsdb() -> TSDB:
    db = TSDB()
    for t in range(0, 601, 15):
        at = NOW - 600 + t
        for pod, version, rate in (("a-1", "v1", 10.0), ("a-2", "v1", 10.0), ("b-1", "v2", 4.0)):
            base = {"job": "web", "pod": pod, "version": version}
            db.append({"__name__": "requests_total", **base, "code": "200"}, at, rate * 0.9 * t)
            db.append({"__name__": "requests_total", **base, "code": "500"}, at, rate * 0.1 * t)
        # A latency histogram for v1: 50% under 0.1 s, 90% under 0.5 s, all under 1 s.
        for le, share in (("0.1", 0.5), ("0.5", 0.9), ("1", 1.0), ("+Inf", 1.0)):
            bucket = {"__name__": "latency_bucket", "version": "v1", "le": le}
            db.append(bucket, at, 100 * share * t)
        db.append({"__name__": "temperature", "room": "lab"}, at, 20.0 + t / 60)
        db.append({"__name__": "temperature", "room": "hall"}, at, 15.0)
        db.append({"__name__": "owner", "version": "v1", "team": "blue"}, at, 1.0)
        db.append({"__name__": "owner", "version": "v2", "team": "green"}, at, 1.0)
    return db


def run(tsdb: TSDB, query: str, at: float = NOW) -> Value:
    return Evaluator(tsdb).instant(parse(query), at)


def by(result: Value, label: str) -> dict[str, float]:
    assert isinstance(result, list)
    out = {}
    for sample in result:
        assert isinstance(sample, Sample)
        out[sample.labels.get(label, "")] = sample.value
    return out


@pytest.mark.parametrize(("query", "expected"), [
    ("1 + 2 * 3", 7.0), ("(1 + 2) * 3", 9.0), ("2 ^ 3 ^ 2", 512.0), ("-2 ^ 2", -4.0),
    ("10 / 4 - 1", 1.5), ("7 % 4", 3.0), ("1 > bool 0", 1.0), ("2 == bool 3", 0.0),
    ("0x10 + 1e1", 26.0), ("1 / 0", math.inf), ("- -3", 3.0), ("time() > bool 0", 1.0),
    ("scalar(vector(4)) * 2", 8.0),
])
def test_scalar_arithmetic_and_precedence(tsdb: TSDB, query: str, expected: float) -> None:
    assert parse(query).type == ValueType.SCALAR
    assert run(tsdb, query) == expected


@pytest.mark.parametrize(("query", "message"), [
    ("sum(requests_total", "unexpected end of input"),
    ("rate(requests_total)", "expected type range vector"),
    ("1 > 0", "comparisons between scalars must use BOOL modifier"),
    ("nosuchfn(requests_total)", "unknown function"),
    ("requests_total @ 100", "@ modifier"),
    ("rate(requests_total[5m:1m])", "subqueries"),
    ("count_values(\"v\", requests_total)", "count_values"),
    ("{}", "at least one non-empty matcher"),
    ("sum(requests_total[5m])", "expected type instant vector"),
    ("requests_total{code=200}", "expected string"),
    ("(requests_total)[5m]", "ranges only allowed for vector selectors"),
    ("requests_total and 1", "set operator"),
    ("requests_total[5x]", "unexpected"),
])
def test_parse_errors_name_the_problem(query: str, message: str) -> None:
    with pytest.raises(PromQLError, match="parse error") as failure:
        parse(query)
    assert message in str(failure.value)


def test_matchers(tsdb: TSDB) -> None:
    assert len(run(tsdb, 'requests_total{code="500"}')) == 3  # type: ignore[arg-type]
    assert set(by(run(tsdb, 'requests_total{code="500", pod!="a-1"}'), "pod")) == {"a-2", "b-1"}
    assert set(by(run(tsdb, 'requests_total{code="500", pod=~"a-.*"}'), "pod")) == {"a-1", "a-2"}
    assert set(by(run(tsdb, 'requests_total{code="500", pod!~"a.*"}'), "pod")) == {"b-1"}
    assert set(by(run(tsdb, '{__name__=~"temp.*", room="lab"}'), "room")) == {"lab"}
    # Regexes are anchored: "a" alone matches no pod.
    assert run(tsdb, 'requests_total{pod=~"a"}') == []


def test_rate_increase_irate(tsdb: TSDB) -> None:
    rates = by(run(tsdb, 'sum by (pod) (rate(requests_total[1m]))'), "pod")
    assert rates == pytest.approx({"a-1": 10.0, "a-2": 10.0, "b-1": 4.0})
    increase = by(run(tsdb, 'increase(requests_total{pod="b-1",code="200"}[5m])'), "pod")
    assert increase["b-1"] == pytest.approx(4 * 0.9 * 300)
    irate = by(run(tsdb, 'irate(requests_total{pod="a-1",code="500"}[1m])'), "pod")
    assert irate["a-1"] == pytest.approx(1.0)
    result = run(tsdb, "rate(requests_total[1m])")
    assert isinstance(result, list) and all("__name__" not in s.labels for s in result)


def test_counter_reset_is_not_a_drop() -> None:
    db = TSDB()
    for i, value in enumerate([100, 110, 120, 5, 15, 25]):
        db.append({"__name__": "c_total"}, 1000 + i * 10, float(value))
    increase = run(db, "increase(c_total[60s])", at=1050)
    assert isinstance(increase, list) and isinstance(increase[0], Sample)
    # 20 before the reset, 5 up to the first sample after, 20 after: 45 over 50 s, extrapolated.
    assert increase[0].value == pytest.approx(45 * 60 / 50, rel=0.1)


def test_error_ratio_by_version(tsdb: TSDB) -> None:
    query = ('sum by (version) (rate(requests_total{code=~"5.."}[5m]))'
             ' / sum by (version) (rate(requests_total[5m]))')
    assert by(run(tsdb, query), "version") == pytest.approx({"v1": 0.1, "v2": 0.1})
    above = by(run(tsdb, f"({query}) > 0.05"), "version")
    assert above == pytest.approx({"v1": 0.1, "v2": 0.1})  # a filter keeps the value
    assert run(tsdb, f"({query}) > 0.5") == []
    flags = by(run(tsdb, f"({query}) > bool 0.5"), "version")
    assert flags == {"v1": 0.0, "v2": 0.0}


def test_aggregations(tsdb: TSDB) -> None:
    r = 'rate(requests_total{code="200"}[5m])'
    assert by(run(tsdb, f"sum({r})"), "") == pytest.approx({"": 21.6})
    assert by(run(tsdb, f"avg by (version) ({r})"), "version") == pytest.approx(
        {"v1": 9.0, "v2": 3.6})
    assert by(run(tsdb, f"count without (pod) ({r})"), "version") == {"v1": 2.0, "v2": 1.0}
    assert by(run(tsdb, f"max({r})"), "") == pytest.approx({"": 9.0})
    assert by(run(tsdb, f"min({r})"), "") == pytest.approx({"": 3.6})
    assert set(by(run(tsdb, f"topk(2, {r})"), "pod")) == {"a-1", "a-2"}
    assert set(by(run(tsdb, f"bottomk(1, {r})"), "pod")) == {"b-1"}
    assert by(run(tsdb, f"quantile(0.5, {r})"), "") == pytest.approx({"": 9.0})
    without = run(tsdb, f"sum without (pod, code) ({r})")
    assert isinstance(without, list)
    assert sorted(tuple(sorted(s.labels)) for s in without) == [("job", "version")] * 2


def test_histogram_quantile(tsdb: TSDB) -> None:
    q = "histogram_quantile({}, sum by (le, version) (rate(latency_bucket[5m])))"
    assert by(run(tsdb, q.format(0.5)), "version")["v1"] == pytest.approx(0.1)
    # 70% lies halfway through the 0.1-0.5 bucket (50% → 90%).
    assert by(run(tsdb, q.format(0.7)), "version")["v1"] == pytest.approx(0.3)
    assert by(run(tsdb, q.format(0.95)), "version")["v1"] == pytest.approx(0.75)
    assert math.isinf(by(run(tsdb, q.format(1.5)), "version")["v1"])


def test_vector_matching(tsdb: TSDB) -> None:
    per_pod = 'sum by (pod, version) (rate(requests_total[5m]))'
    per_version = 'sum by (version) (rate(requests_total[5m]))'
    share = by(run(tsdb, f"{per_pod} / on (version) group_left {per_version}"), "pod")
    assert share == pytest.approx({"a-1": 0.5, "a-2": 0.5, "b-1": 1.0})
    teams = run(tsdb, f"{per_version} * on (version) group_left (team) owner")
    assert isinstance(teams, list)
    assert {s.labels["team"] for s in teams} == {"blue", "green"}
    ignoring = by(run(tsdb, 'requests_total{code="500"} / ignoring (code) '
                            'requests_total{code="200"}'), "pod")
    assert ignoring == pytest.approx({"a-1": 1 / 9, "a-2": 1 / 9, "b-1": 1 / 9})
    with pytest.raises(EvalError, match="multiple matches for labels"):
        run(tsdb, f"{per_pod} / on (version) {per_version}")
    with pytest.raises(EvalError, match="duplicate series for the match group"):
        run(tsdb, f"{per_version} / on (version) group_left {per_pod}")


def test_set_operators(tsdb: TSDB) -> None:
    lab = 'temperature{room="lab"}'
    assert set(by(run(tsdb, f"temperature and {lab}"), "room")) == {"lab"}
    assert set(by(run(tsdb, f"temperature unless {lab}"), "room")) == {"hall"}
    assert set(by(run(tsdb, f"{lab} or temperature"), "room")) == {"lab", "hall"}


def test_functions(tsdb: TSDB) -> None:
    assert by(run(tsdb, "vector(3)"), "") == {"": 3.0}
    assert by(run(tsdb, "clamp_min(temperature, 18)"), "room") == {"lab": 30.0, "hall": 18.0}
    assert by(run(tsdb, 'absent(nothing{job="x"})'), "job") == {"x": 1.0}
    assert run(tsdb, "absent(temperature)") == []
    assert by(run(tsdb, "avg_over_time(temperature{room=\"hall\"}[5m])"), "room") == {
        "hall": 15.0}
    assert math.isnan(run(tsdb, "scalar(temperature)"))  # type: ignore[arg-type]
    assert by(run(tsdb, "temperature offset 10m"), "room") == {"lab": 20.0, "hall": 15.0}


def test_lookback_and_staleness(tsdb: TSDB) -> None:
    assert run(tsdb, "temperature", at=NOW + 299) != []
    assert run(tsdb, "temperature", at=NOW + 301) == []  # past the 5-minute lookback
    tsdb.mark_stale({"__name__": "temperature", "room": "hall"}, NOW + 1)
    assert set(by(run(tsdb, "temperature", at=NOW + 2), "room")) == {"lab"}


def test_range_evaluation(tsdb: TSDB) -> None:
    series = Evaluator(tsdb).range(parse('sum(rate(requests_total{pod="b-1"}[1m]))'),
                                   NOW - 120, NOW, 30)
    assert len(series) == 1
    assert [t for t, _ in series[0].points] == [NOW - 120 + 30 * i for i in range(5)]
    assert all(v == pytest.approx(4.0) for _, v in series[0].points)
    scalar = Evaluator(tsdb).range(parse("2 * 2"), NOW - 10, NOW, 5)
    assert scalar[0].points == [(NOW - 10, 4.0), (NOW - 5, 4.0), (NOW, 4.0)]
