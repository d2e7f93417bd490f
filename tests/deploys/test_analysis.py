"""Analysis gate counting and classification, with a scripted MetricsSource.

This is the pure domain logic; tests/integrations/test_prometheus.py runs the
same functions against the sandbox's Prometheus API.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.config import Analysis, AnalysisMetric
from bot.deploys.analysis import (
    HISTORY,
    AnalysisState,
    Measurement,
    OnEmpty,
    Verdict,
    classify,
    fmt,
    measure,
    placeholders,
    record,
    render_query,
    verdict,
)

AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NAN, INF = math.nan, math.inf
Answer = list[tuple[dict[str, str], float]] | Exception
VARS = {"version": "2.0.0", "service": "shop", "namespace": "prod", "environment": "prod",
        "deployment": "shop"}


def metric(name: str = "error-ratio", success: str | None = "< 0.01",
           failure: str | None = ">= 0.05", query: str | None = None) -> AnalysisMetric:
    return AnalysisMetric(name=name, query=query or f'{name}{{version="{{{{version}}}}"}}',
                          success=success, failure=failure)


def spec(*metrics: AnalysisMetric, **kw: object) -> Analysis:
    return Analysis.model_validate({"metrics": list(metrics) or [metric()], **kw})


def one(value: float) -> Answer:
    return [({}, value)]


class Scripted:
    """Answers each metric's queries in order; the query text picks the script."""

    def __init__(self, **scripts: Sequence[Answer]) -> None:
        self.scripts = {name: list(answers) for name, answers in scripts.items()}
        self.calls: list[str] = []

    async def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        self.calls.append(promql)
        name = promql.split("{")[0]
        answer = self.scripts[name].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def run(analysis: Analysis, source: Scripted, rounds: int) -> list[Verdict]:
    state, verdicts = AnalysisState(), []
    for i in range(rounds):
        taken = await measure(analysis, source, VARS, AT + timedelta(seconds=30 * i), state)
        state = record(state, taken)
        verdicts.append(verdict(analysis, state))
    return verdicts


# --- classify ---------------------------------------------------------------

@pytest.mark.parametrize(("success", "failure", "value", "phase"), [
    ("< 0.01", ">= 0.05", 0.002, "successful"),
    ("< 0.01", ">= 0.05", 0.2531, "failed"),
    ("< 0.01", ">= 0.05", 0.03, "inconclusive"),  # neither holds
    ("< 1", ">= 0.05", 0.5, "failed"),  # both hold: failure is checked first
    ("< 0.01", None, 0.002, "successful"),
    ("< 0.01", None, 0.03, "failed"),  # only success given and not met: failed, as Argo
    (None, ">= 0.05", 0.03, "successful"),  # only failure given and not met: successful
    (None, ">= 0.05", 0.06, "failed"),
    ("< 0.01", ">= 0.05", INF, "failed"),
    ("< 0.01", ">= 0.05", NAN, "inconclusive"),
    ("< 0.01", None, NAN, "inconclusive"),  # not silently failed ...
    (None, ">= 0.05", NAN, "inconclusive"),  # ... nor silently successful
    ("== 1", "!= 1", 1.0, "successful"),
    (">0.99", "<=0.9", 0.95, "inconclusive"),  # no spaces in the condition
])
def test_classify(success: str | None, failure: str | None, value: float, phase: str) -> None:
    assert classify(metric(success=success, failure=failure), value, "inconclusive")[0] == phase


def test_classify_messages() -> None:
    m = metric(success="< 0.01", failure=">=0.05")
    assert classify(m, 0.25311, "inconclusive") == (
        "failed", "error-ratio = 0.2531 (failure: >= 0.05)")
    assert classify(m, 0.002, "inconclusive")[1] == "error-ratio = 0.002 (success: < 0.01)"
    assert classify(m, 0.03, "inconclusive")[1] == (
        "error-ratio = 0.03 (neither success < 0.01 nor failure >= 0.05)")
    assert classify(metric(failure=None), 0.03, "inconclusive")[1] == (
        "error-ratio = 0.03 (success < 0.01 not met)")
    assert "NaN" in classify(m, NAN, "inconclusive")[1]


@pytest.mark.parametrize(("on_empty", "phase"), [
    ("inconclusive", "inconclusive"), ("failure", "failed"), ("success", "successful"),
    ("error", "error")])
def test_classify_empty_follows_on_empty(on_empty: OnEmpty, phase: str) -> None:
    got, message = classify(metric(), None, on_empty)
    assert got == phase
    assert "no data" in message and on_empty in message


def test_fmt() -> None:
    assert [fmt(v) for v in (0.25311, 0.002, 150.0, 0.0, 1.5e-5, NAN, INF, -INF)] == [
        "0.2531", "0.002", "150", "0", "1.5e-05", "NaN", "+Inf", "-Inf"]


# --- render_query -----------------------------------------------------------

def test_render_query_keeps_promql_braces() -> None:
    template = ('sum(rate(x{service="{{service}}",version="{{ version }}",code=~"5.."}[1m]))'
                ' / sum(rate(x{service="{{service}}"}[1m]))')
    assert placeholders(template) == {"service", "version"}
    assert render_query(template, VARS) == (
        'sum(rate(x{service="shop",version="2.0.0",code=~"5.."}[1m]))'
        ' / sum(rate(x{service="shop"}[1m]))')


def test_render_query_refuses_unknown_or_malformed_placeholders() -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder \{\{verison\}\}"):
        render_query('x{version="{{verison}}"}', VARS)
    with pytest.raises(ValueError, match="malformed placeholder"):
        render_query('x{version="{{args.version}}"}', VARS)


def test_render_query_refuses_values_that_escape_the_string() -> None:
    with pytest.raises(ValueError, match="version"):
        render_query('x{version="{{version}}"}', {"version": '1"} or vector(0) #'})


# --- measure ----------------------------------------------------------------

async def test_measure_runs_queries_concurrently_and_renders_them() -> None:
    both_started = asyncio.Barrier(2)

    class Concurrent:
        def __init__(self) -> None:
            self.calls: list[str] = []

        async def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
            self.calls.append(promql)
            await asyncio.wait_for(both_started.wait(), 1)  # deadlocks if run one by one
            return [({}, 0.001)]

    source = Concurrent()
    analysis = spec(metric("a"), metric("b"))
    taken = await measure(analysis, source, VARS, AT)
    assert [(m.metric, m.phase, m.value, m.at) for m in taken] == [
        ("a", "successful", 0.001, AT), ("b", "successful", 0.001, AT)]
    assert sorted(source.calls) == ['a{version="2.0.0"}', 'b{version="2.0.0"}']


async def test_measure_turns_failures_into_error_measurements() -> None:
    source = Scripted(a=[ConnectionError("Prometheus is down")],
                      b=[[({"version": "1"}, 0.1), ({"version": "2"}, 0.2)]])
    bad_template = metric("c", query='c{version="{{release}}"}')
    taken = await measure(spec(metric("a"), metric("b"), bad_template), source, VARS, AT)
    assert [m.phase for m in taken] == ["error", "error", "error"]
    assert [m.value for m in taken] == [None, None, None]
    assert taken[0].message == "a: Prometheus is down"
    assert "returned 2 series" in taken[1].message
    assert "aggregate it, e.g. sum(...)" in taken[1].message
    assert "{{release}}" in taken[2].message
    assert not any(call.startswith("c") for call in source.calls)  # never half-rendered


async def test_measure_skips_metrics_that_reached_count() -> None:
    analysis = spec(metric("a"), metric("b"), count=1)
    source = Scripted(a=[one(0.001)], b=[RuntimeError("boom"), one(0.001)])
    verdicts = await run(analysis, source, 2)
    assert source.calls == ['a{version="2.0.0"}', 'b{version="2.0.0"}', 'b{version="2.0.0"}']
    assert [v.outcome for v in verdicts] == ["running", "successful"]


# --- record and verdict -----------------------------------------------------

async def test_one_failure_fails_with_a_readable_reason() -> None:
    [result] = await run(spec(), Scripted(**{"error-ratio": [one(0.25311)]}), 1)
    assert result == Verdict("failed", "error-ratio failed 1 of 1 measurements (limit 0): "
                                       "0.2531 >= 0.05 (failure condition)")


async def test_success_only_metric_failure_reason() -> None:
    analysis = spec(metric(failure=None), failure_limit=1)
    verdicts = await run(analysis, Scripted(**{"error-ratio": [one(0.2), one(0.3)]}), 2)
    assert verdicts[0].outcome == "running"
    assert verdicts[1] == Verdict("failed", "error-ratio failed 2 of 2 measurements (limit 1): "
                                            "0.2, 0.3 not < 0.01 (success condition)")


async def test_failure_limit_tolerates_that_many_failures() -> None:
    analysis = spec(failure_limit=1, count=3)
    source = Scripted(**{"error-ratio": [one(0.3), one(0.001), one(0.002)]})
    verdicts = await run(analysis, source, 3)
    assert [v.outcome for v in verdicts] == ["running", "running", "successful"]
    assert "1 failed within limits" in verdicts[2].reason
    again = Scripted(**{"error-ratio": [one(0.3), one(0.001), one(0.3)]})
    assert [v.outcome for v in await run(analysis, again, 3)] == ["running", "running", "failed"]


async def test_count_reached_is_successful_and_lists_values() -> None:
    source = Scripted(**{"error-ratio": [one(0.001), one(0.002), one(0.0015)]})
    verdicts = await run(spec(count=3), source, 3)
    assert [v.outcome for v in verdicts] == ["running", "running", "successful"]
    assert verdicts[0].reason.startswith("measuring (1 rounds so far): error-ratio 1/3 measured")
    assert verdicts[2].reason == ("error-ratio 3/3 measured, values 0.001, 0.002, "
                                  "0.0015 [success < 0.01 and failure >= 0.05]")


async def test_inconclusive_pauses_for_a_person() -> None:
    [result] = await run(spec(), Scripted(**{"error-ratio": [one(0.03)]}), 1)
    assert result.outcome == "inconclusive"
    assert result.reason == ("error-ratio was inconclusive in 1 of 1 measurements (limit 0): "
                             "0.03 (neither success < 0.01 nor failure >= 0.05 held); "
                             "a person has to decide")
    tolerant = spec(inconclusive_limit=1, count=3)
    source = Scripted(**{"error-ratio": [one(0.03), []]})  # empty: inconclusive by default
    verdicts = await run(tolerant, source, 2)
    assert [v.outcome for v in verdicts] == ["running", "inconclusive"]
    assert "in 2 of 2 measurements (limit 1): 0.03, no data" in verdicts[1].reason


async def test_consecutive_errors_end_in_error_and_do_not_count() -> None:
    analysis = spec(consecutive_error_limit=2, count=2)
    down = RuntimeError("connection refused")
    source = Scripted(**{"error-ratio": [down, down, one(0.001), down, down, down]})
    verdicts = await run(analysis, source, 6)
    # A good value resets the streak; errors never count towards `count`.
    assert [v.outcome for v in verdicts] == [
        "running", "running", "running", "running", "running", "error"]
    assert verdicts[-1].reason == ("error-ratio could not be measured 3 times in a row "
                                   "(limit 2): error-ratio: connection refused")


async def test_worst_metric_decides_and_others_keep_running() -> None:
    analysis = spec(metric("a"), metric("b"), metric("c"), count=2)
    source = Scripted(a=[one(0.001)], b=[one(0.03)], c=[one(0.5)])
    [result] = await run(analysis, source, 1)
    assert result.outcome == "failed" and result.reason.startswith("c failed 1 of 1")
    slow = Scripted(a=[one(0.001), one(0.001)], b=[RuntimeError("x"), one(0.001)])
    verdicts = await run(spec(metric("a"), metric("b"), count=2), slow, 2)
    assert [v.outcome for v in verdicts] == ["running", "running"]  # b has 1 of 2


async def test_on_empty_failure_reason() -> None:
    [result] = await run(spec(on_empty="failure"), Scripted(**{"error-ratio": [[]]}), 1)
    assert result.outcome == "failed"
    assert result.reason.endswith("no data counts as a failure (on_empty: failure)")


def test_record_keeps_recent_history_and_leaves_input_alone() -> None:
    state = AnalysisState()
    for i in range(HISTORY + 5):
        before = state.to_json()
        state = record(state, [Measurement("a", "successful", float(i), "ok", AT)])
    assert before["rounds"] == HISTORY + 4 and state.rounds == HISTORY + 5
    assert len(state.measurements) == HISTORY and state.measurements[0].value == 5.0
    assert state.counts("a").successful == HISTORY + 5


def test_state_json_round_trip_survives_nan_and_inf() -> None:
    state = record(AnalysisState(), [
        Measurement("a", "inconclusive", NAN, "a = NaN", AT),
        Measurement("b", "failed", INF, "b = +Inf", AT),
        Measurement("c", "error", None, "c: down", AT + timedelta(seconds=1)),
        Measurement("d", "successful", 0.25, "d = 0.25", AT)])
    text = json.dumps(state.to_json(), allow_nan=False)  # valid JSON for JSONB columns
    back = AnalysisState.from_json(json.loads(text))
    assert back.to_json() == state.to_json()
    assert math.isnan(back.measurements[0].value or 0.0)
    assert back.measurements[1].value == INF and back.measurements[2].value is None
    assert back.counts("c").consecutive_errors == 1 and back.rounds == 1
    assert back.measurements[2].at == AT + timedelta(seconds=1)
