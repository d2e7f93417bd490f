"""How a /stats report reads in chat (and in the terminal, line for line)."""

from __future__ import annotations

from bot.core.chat import Context, Reply, Section, reply
from bot.core.durations import format_duration
from bot.core.outbox import is_dm
from bot.reports.dora import DoraFigures
from bot.reports.report import StatsReport
from bot.reports.stats import IncidentFigures

NOTHING = "—"  # a figure with nothing to measure
_LISTED_FAILURES = 5


def _number(value: float) -> str:
    """At most two decimals, no trailing zeros: 0.17, 1.5, 2."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _percent(ratio: float) -> str:
    return f"{ratio * 100:.1f}".rstrip("0").rstrip(".") + "%"


def _duration(seconds: float | None) -> str:
    return NOTHING if seconds is None else format_duration(seconds)


def _who(target: str) -> str:
    return f"<@{target}>" if is_dm(target) else f"<#{target}>"


def incident_lines(f: IncidentFigures) -> list[str]:
    severities = " · ".join(f"{name} {n}" for name, n in f.by_severity.items())
    return [
        f"*Incidents*: {f.total} ({severities}); {f.open_now} open now",
        f"MTTA {_duration(f.mtta_seconds)} ({f.acknowledged} acknowledged) · "
        f"MTTR {_duration(f.mttr_seconds)} ({f.resolved} resolved)",
    ]


def page_line(pages: list[tuple[str, int]]) -> str:
    listed = ", ".join(f"{_who(user)} {n}" for user, n in pages)
    return f"*Pages*: {listed or 'none'}"


def dora_lines(d: DoraFigures, environment: str) -> list[str]:
    lines = [
        f"*Deploys to {environment}*",
        f"Deployment frequency: {d.deployments} completed "
        f"({_number(d.per_day)}/day, {_number(d.per_week)}/week)",
        f"Lead time for changes: median {_duration(d.lead_time_median)}, "
        f"p90 {_duration(d.lead_time_p90)} ({len(d.lead_times)} with a commit time)",
    ]
    ratio = d.change_failure_ratio
    failures = "; ".join(
        f"#{f.deploy_id} ({', '.join(f.reasons)})" for f in d.failures[:_LISTED_FAILURES]
    )
    more = len(d.failures) - _LISTED_FAILURES
    if more > 0:
        failures += f"; {more} more"
    lines.append(
        f"Change failure rate: {NOTHING if ratio is None else _percent(ratio)} "
        f"({len(d.failures)} of {d.changes} changes{': ' + failures if failures else ''})"
    )
    lines.append(
        f"Time to restore: median {_duration(d.restore_median)} "
        f"({len(d.restore_times)} restored, {d.unrestored} not yet)"
    )
    return lines


def render_stats(report: StatsReport) -> Reply:
    w = report.window
    scope = report.service or "all services"
    head = (
        f"*Stats for {scope}, last {report.days} days* "
        f"({w.start:%Y-%m-%d %H:%M} → {w.end:%Y-%m-%d %H:%M} UTC)"
    )
    incidents = incident_lines(report.incidents)
    pages = page_line(report.pages)
    deploys = dora_lines(report.dora, report.environment)
    note = (
        "MTTA/MTTR: from detection, incidents detected in the window. A failed change "
        "ended RolledBack or Failed, was rolled back afterwards, or was followed by an "
        f"incident on its service within {format_duration(report.failure_window)}. "
        "Time to restore: from the failure to the rollback, fix or mitigation."
    )
    text = "\n".join([head, *incidents, pages, *deploys, f"({note})"])
    return reply(
        text,
        Section(text=head),
        Section(text="\n".join(incidents)),
        Section(text=pages),
        Section(text="\n".join(deploys)),
        Context(text=note),
    )
