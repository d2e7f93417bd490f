"""Analysis gates: measure metrics each interval and decide, as Argo Rollouts does.

Pure logic plus the MetricsSource port; the caller (the rollout loop) owns
timing and storage: each tick it runs `measure`, folds the round into the
stored state with `record` and asks `verdict` what to do.

Counting follows Argo Rollouts' analysis controller (analysis/analysis.go,
utils/evaluate/evaluate.go):
  * A measurement is Successful, Failed, Inconclusive or Error. The failure
    condition is checked first. With only a success condition, a value that
    does not meet it is Failed; with only a failure condition, a value that
    does not meet it is Successful; with both, neither holding is
    Inconclusive.
  * Successful/Failed/Inconclusive count towards `count` and reset the
    consecutive-error streak; an Error counts neither, it only extends the
    streak (Argo retries errors instead of spending the budget on them).
  * Per metric: Failed when failed > failure_limit, Inconclusive when
    inconclusive > inconclusive_limit, Error when consecutive errors >
    consecutive_error_limit; otherwise Successful once `count` measurements
    are in (tolerated failures do not spoil it), else still running.
  * The gate ends as soon as one metric ends badly (Argo terminates the run),
    with the worst outcome across metrics: failed, then error, then
    inconclusive (Argo's analysisStatusOrder). It passes when every metric
    has passed.
"""

from __future__ import annotations

import asyncio
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from bot.core.config import Analysis, AnalysisMetric
from bot.deploys.ports import MetricsSource

Phase = Literal["successful", "failed", "inconclusive", "error"]
OnEmpty = Literal["inconclusive", "failure", "success", "error"]
Outcome = Literal["running", "successful", "failed", "inconclusive", "error"]

HISTORY = 20  # measurements kept in the state: enough to explain a verdict in Slack
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Characters that would let a substituted value escape a PromQL string literal.
_UNSAFE = re.compile(r"[\"'`\\\n\r]")
_CONDITION = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*$")
_EMPTY: dict[OnEmpty, Phase] = {
    "inconclusive": "inconclusive",
    "failure": "failed",
    "success": "successful",
    "error": "error",
}
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def placeholders(template: str) -> set[str]:
    """The {{names}} a query template uses (lets config loading check them early)."""
    return set(_PLACEHOLDER.findall(template))


def render_query(template: str, variables: Mapping[str, str]) -> str:
    """Replace {{name}} placeholders exactly; any other brace is PromQL's own."""
    unknown = sorted(placeholders(template) - variables.keys())
    if unknown:
        raise ValueError(
            f"unknown placeholder {', '.join('{{' + u + '}}' for u in unknown)} "
            f"in query (known: {', '.join(sorted(variables)) or 'none'})"
        )
    if "{{" in _PLACEHOLDER.sub("", template):
        raise ValueError("malformed placeholder in query: use {{name}} with a plain name")
    for name in placeholders(template):
        if _UNSAFE.search(variables[name]):
            # Values are typed in Slack; never let one rewrite the query.
            raise ValueError(f"value of {{{{{name}}}}} contains a quote, backslash or newline")
    return _PLACEHOLDER.sub(lambda m: variables[m.group(1)], template)


@dataclass
class Measurement:
    metric: str
    phase: Phase
    value: float | None  # None: no value (empty result, query error)
    message: str  # e.g. "error-ratio = 0.2531 (failure: >= 0.05)"
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "phase": self.phase,
            "value": _encode(self.value),
            "message": self.message,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Measurement:
        return cls(
            metric=str(data["metric"]),
            phase=data["phase"],
            value=_decode(data.get("value")),
            message=str(data.get("message", "")),
            at=datetime.fromisoformat(data["at"]),
        )


@dataclass
class MetricCounts:
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_errors: int = 0

    @property
    def count(self) -> int:
        """Measurements that count towards `count` (errors do not, as in Argo)."""
        return self.successful + self.failed + self.inconclusive


@dataclass
class AnalysisState:
    metrics: dict[str, MetricCounts] = field(default_factory=dict)
    rounds: int = 0  # measurement rounds recorded
    measurements: list[Measurement] = field(default_factory=list)  # newest last, ≤ HISTORY

    def counts(self, metric: str) -> MetricCounts:
        return self.metrics.get(metric, MetricCounts())

    def to_json(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "metrics": {name: vars(c).copy() for name, c in self.metrics.items()},
            "measurements": [m.to_json() for m in self.measurements],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AnalysisState:
        return cls(
            metrics={name: MetricCounts(**c) for name, c in data.get("metrics", {}).items()},
            rounds=int(data.get("rounds", 0)),
            measurements=[Measurement.from_json(m) for m in data.get("measurements", [])],
        )


@dataclass
class Verdict:
    outcome: Outcome
    reason: str  # shown to on-call people in Slack


def classify(metric: AnalysisMetric, value: float | None, on_empty: OnEmpty) -> tuple[Phase, str]:
    """Phase and human message for one value (None: the query returned no series)."""
    name = metric.name
    if value is None:
        return _EMPTY[on_empty], (
            f"{name}: no data, the query returned no series (on_empty: {on_empty})"
        )
    if math.isnan(value):
        # NaN is what a ratio gives with no traffic in the window (0/0). It
        # says nothing about the version, and every comparison with NaN is
        # false, so Argo-style evaluation would silently call it Failed (only a
        # success condition) or Successful (only a failure condition). A
        # person should look instead.
        return "inconclusive", f"{name} = NaN (no data in the window, e.g. 0/0 without traffic)"
    shown = f"{name} = {fmt(value)}"
    if metric.failure is not None and holds(metric.failure, value):
        return "failed", f"{shown} (failure: {_tidy(metric.failure)})"
    if metric.success is None:
        return "successful", f"{shown} (failure {_tidy(metric.failure or '')} not met)"
    if holds(metric.success, value):
        return "successful", f"{shown} (success: {_tidy(metric.success)})"
    if metric.failure is None:  # as Argo: only a success condition, and it does not hold
        return "failed", f"{shown} (success {_tidy(metric.success)} not met)"
    return "inconclusive", (
        f"{shown} (neither success {_tidy(metric.success)} nor failure {_tidy(metric.failure)})"
    )


async def measure(
    spec: Analysis,
    source: MetricsSource,
    variables: Mapping[str, str],
    at: datetime,
    state: AnalysisState | None = None,
) -> list[Measurement]:
    """One round: every metric once, queries concurrently; never raises for a query.

    With `state`, metrics that already have `count` measurements are skipped,
    as Argo stops measuring a metric once it reaches its count."""
    metrics = [m for m in spec.metrics if state is None or state.counts(m.name).count < spec.count]
    return list(
        await asyncio.gather(
            *(_measure_one(m, spec.on_empty, source, variables, at) for m in metrics)
        )
    )


async def _measure_one(
    metric: AnalysisMetric,
    on_empty: OnEmpty,
    source: MetricsSource,
    variables: Mapping[str, str],
    at: datetime,
) -> Measurement:
    def error(message: str) -> Measurement:
        return Measurement(metric.name, "error", None, f"{metric.name}: {message}", at)

    try:
        series = await source.query(render_query(metric.query, variables))
    except Exception as exc:  # any failure to measure is an Error measurement, as in Argo
        return error(str(exc) or type(exc).__name__)
    if len(series) > 1:
        sample = ", ".join(_labels(labels) for labels, _ in series[:3])
        return error(
            f"the query returned {len(series)} series ({sample}"
            f"{', ...' if len(series) > 3 else ''}); aggregate it, e.g. sum(...)"
        )
    value = series[0][1] if series else None
    phase, message = classify(metric, value, on_empty)
    return Measurement(metric.name, phase, value, message, at)


def record(state: AnalysisState, measurements: Sequence[Measurement]) -> AnalysisState:
    """The state after one round; the given state is left untouched."""
    metrics = {name: replace(c) for name, c in state.metrics.items()}
    for m in measurements:
        c = metrics.setdefault(m.metric, MetricCounts())
        if m.phase == "error":
            c.error += 1
            c.consecutive_errors += 1
            continue
        setattr(c, m.phase, getattr(c, m.phase) + 1)
        c.consecutive_errors = 0
    history = [*state.measurements, *measurements][-HISTORY:]
    return AnalysisState(metrics=metrics, rounds=state.rounds + 1, measurements=history)


def verdict(spec: Analysis, state: AnalysisState) -> Verdict:
    ended: dict[Outcome, list[str]] = {"failed": [], "error": [], "inconclusive": []}
    for metric in spec.metrics:
        c = state.counts(metric.name)
        mine = [m for m in state.measurements if m.metric == metric.name]
        if c.failed > spec.failure_limit:
            ended["failed"].append(_failed_reason(metric, c, spec.failure_limit, mine))
        elif c.consecutive_errors > spec.consecutive_error_limit:
            last = next((m.message for m in reversed(mine) if m.phase == "error"), "")
            ended["error"].append(
                f"{metric.name} could not be measured {c.consecutive_errors} times in a row "
                f"(limit {spec.consecutive_error_limit}): {last}"
            )
        elif c.inconclusive > spec.inconclusive_limit:
            ended["inconclusive"].append(
                f"{metric.name} was inconclusive in {c.inconclusive} of {c.count} measurements "
                f"(limit {spec.inconclusive_limit}): {_values(mine, 'inconclusive')}"
                f"{_neither(metric)}; a person has to decide"
            )
    for outcome in ("failed", "error", "inconclusive"):
        if ended[outcome]:
            return Verdict(outcome, "; ".join(ended[outcome]))
    done = [m for m in spec.metrics if state.counts(m.name).count >= spec.count]
    if len(done) == len(spec.metrics):
        # No "passed:" prefix: the outcome says it, and callers print "Analysis passed: ...".
        return Verdict(
            "successful", "; ".join(_summary(m, state, spec.count) for m in spec.metrics)
        )
    return Verdict(
        "running",
        f"measuring ({state.rounds} rounds so far): "
        + "; ".join(_summary(m, state, spec.count) for m in spec.metrics),
    )


def _failed_reason(
    metric: AnalysisMetric, c: MetricCounts, limit: int, mine: list[Measurement]
) -> str:
    head = f"{metric.name} failed {c.failed} of {c.count} measurements (limit {limit}): "
    values = [m.value for m in mine if m.phase == "failed"]
    numbers = ", ".join(fmt(v) for v in values if v is not None)
    parts = []
    if numbers and metric.failure is not None:
        parts.append(f"{numbers} {_tidy(metric.failure)} (failure condition)")
    elif numbers and metric.success is not None:
        parts.append(f"{numbers} not {_tidy(metric.success)} (success condition)")
    if any(v is None for v in values):
        parts.append("no data counts as a failure (on_empty: failure)")
    return head + ("; ".join(parts) or "values no longer in the history")


def _summary(metric: AnalysisMetric, state: AnalysisState, count: int) -> str:
    c = state.counts(metric.name)
    extras = [
        f"{n} {label}"
        for n, label in (
            (c.failed, "failed"),
            (c.inconclusive, "inconclusive"),
            (c.error, "errors"),
        )
        if n
    ]
    values = ", ".join(
        fmt(m.value) for m in state.measurements if m.metric == metric.name and m.value is not None
    )
    wanted = " and ".join(
        f"{kind} {_tidy(cond)}"
        for kind, cond in (("success", metric.success), ("failure", metric.failure))
        if cond
    )
    return (
        f"{metric.name} {min(c.count, count)}/{count} measured"
        + (f" ({', '.join(extras)} within limits)" if extras else "")
        + (f", values {values}" if values else "")
        + f" [{wanted}]"
    )


def _values(mine: list[Measurement], phase: Phase) -> str:
    shown = [fmt(m.value) if m.value is not None else "no data" for m in mine if m.phase == phase]
    return ", ".join(shown) or "values no longer in the history"


def _neither(metric: AnalysisMetric) -> str:
    if metric.success is not None and metric.failure is not None:
        return (
            f" (neither success {_tidy(metric.success)} nor failure {_tidy(metric.failure)} held)"
        )
    return ""


def _labels(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _parse(condition: str) -> tuple[str, float]:
    match = _CONDITION.match(condition)
    if match is None:
        raise ValueError(f"condition {condition!r} is not a comparator and a number")
    return match.group(1), float(match.group(2))


def holds(condition: str, value: float) -> bool:
    op, threshold = _parse(condition)
    return _OPS[op](value, threshold)


def _tidy(condition: str) -> str:
    """ ">=0.05" → ">= 0.05", the way people read it."""
    op, threshold = _parse(condition)
    return f"{op} {fmt(threshold)}"


def fmt(value: float) -> str:
    """Short and exact enough for Slack: 0.2531, 0.002, 150, NaN, +Inf."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
        return f"{value:.4g}"
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _encode(value: float | None) -> float | str | None:
    # JSON has no NaN/Infinity (Postgres JSONB and strict parsers refuse them).
    if value is None or math.isfinite(value):
        return value
    return fmt(value)


def _decode(value: Any) -> float | None:
    return None if value is None else float(value)  # float() reads "NaN", "+Inf", "-Inf"
