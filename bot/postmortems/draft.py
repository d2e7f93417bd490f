"""Drafting a postmortem from what the bot recorded about an incident.

The draft is blameless by construction: it lists what happened and when,
from the incident's timeline (status changes, pages and acks, updates,
pinned messages, deploys, rollbacks, runbook runs) and the scalings of its
service, and leaves the judgement (summary, contributing factors, lessons,
action items) to people, as clearly marked placeholders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.durations import format_duration
from bot.deploys.models import ScaleEvent
from bot.incidents.models import Alert, Incident, IncidentEvent

# The prose people write, in the order the document shows it.
EDITABLE = ("summary", "impact", "detection", "contributing_factors", "lessons")
TITLES = {
    "summary": "Summary",
    "impact": "Impact",
    "detection": "Detection",
    "contributing_factors": "Contributing factors",
    "lessons": "Lessons learned",
    "timeline": "Timeline",
    "metrics": "Response metrics",
    "action_items": "Action items",
}
PLACEHOLDERS = {
    "summary": "_To write: what happened and how it was fixed, in two or three sentences._",
    "contributing_factors": "_To write: the conditions that made this possible or worse "
    "(systems and circumstances, not people)._",
    "lessons": "_To write: what went well, what went badly, where we were lucky._",
}
METRICS = (
    ("detect", "Time to detect"),
    ("acknowledge", "Time to acknowledge"),
    ("mitigate", "Time to mitigate"),
    ("resolve", "Time to resolve"),
)


@dataclass(frozen=True)
class Evidence:
    incident: Incident
    events: list[IncidentEvent]
    first_alert_at: datetime | None  # when the problem began (the alert's startsAt)
    notified_at: datetime | None  # when the bot first heard of it
    alert_labels: dict[str, str]
    scalings: list[ScaleEvent]


async def gather(session: AsyncSession, inc: Incident, now: datetime) -> Evidence:
    events = list(
        (
            await session.exec(
                select(IncidentEvent)
                .where(IncidentEvent.incident_id == inc.id)
                .order_by(col(IncidentEvent.at), col(IncidentEvent.id))
            )
        ).all()
    )
    alerts = (await session.exec(select(Alert).where(Alert.incident_id == inc.id))).all()
    first = min(alerts, key=lambda a: a.starts_at, default=None)
    notified = min((a.first_seen for a in alerts), default=None)
    scalings: list[ScaleEvent] = []
    if inc.service:
        end = inc.resolved_at or now
        scalings = list(
            (
                await session.exec(
                    select(ScaleEvent)
                    .where(
                        ScaleEvent.service == inc.service,
                        col(ScaleEvent.at) >= inc.detected_at,
                        col(ScaleEvent.at) <= end,
                    )
                    .order_by(col(ScaleEvent.at))
                )
            ).all()
        )
    return Evidence(
        inc,
        events,
        first.starts_at if first else None,
        notified,
        dict(first.labels) if first else {},
        scalings,
    )


def response_metrics(inc: Incident, notified_at: datetime | None) -> dict[str, float | None]:
    """Seconds from the start of the problem (the incident's detected_at: an
    alert's startsAt, or when it was declared) to the bot hearing of it
    (detect), and to its acknowledgement, mitigation and resolution; the same
    origin /stats uses for MTTA and MTTR."""

    def since(start: datetime | None, end: datetime | None) -> float | None:
        if start is None or end is None:
            return None
        return max(0.0, (end - start).total_seconds())

    return {
        "detect": since(inc.detected_at, notified_at),
        "acknowledge": since(inc.detected_at, inc.acknowledged_at),
        "mitigate": since(inc.detected_at, inc.mitigated_at),
        "resolve": since(inc.detected_at, inc.resolved_at),
    }


def timeline(evidence: Evidence) -> list[dict[str, Any]]:
    rows = [
        {"at": e.at.isoformat(), "kind": e.kind, "text": e.text, "actor": e.actor}
        for e in evidence.events
    ]
    rows += [
        {
            "at": s.at.isoformat(),
            "kind": "scale",
            "text": f"{s.service} in {s.environment} scaled {s.previous} → {s.replicas}",
            "actor": s.by,
        }
        for s in evidence.scalings
    ]
    return sorted(rows, key=lambda r: r["at"])


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "—"


def draft_sections(evidence: Evidence, now: datetime) -> dict[str, Any]:
    inc = evidence.incident
    end = inc.resolved_at or now
    lasted = format_duration(end - inc.detected_at)
    impact = (
        f"{inc.service or 'No service recorded'}, {inc.severity}, for {lasted} "
        f"({_when(inc.detected_at)} → {_when(inc.resolved_at) if inc.resolved_at else 'ongoing'})."
        " _Add who and what was affected (users, requests, revenue)._"
    )
    if evidence.first_alert_at is not None:
        name = evidence.alert_labels.get("alertname", "an alert")
        detection = (
            f"Alert {name} fired at {_when(evidence.first_alert_at)}; the bot opened "
            f"{inc.ref} at {_when(inc.detected_at)}."
        )
    else:
        detection = f"Declared by <@{inc.opened_by}> at {_when(inc.detected_at)}."
    summary = (
        f"{inc.title}. {inc.summary}" if inc.summary else f"{inc.title}. {PLACEHOLDERS['summary']}"
    )
    return {
        "title": f"Postmortem: {inc.title} ({inc.ref})",
        "summary": summary,
        "impact": impact,
        "detection": detection,
        "contributing_factors": PLACEHOLDERS["contributing_factors"],
        "lessons": PLACEHOLDERS["lessons"],
        "timeline": timeline(evidence),
        "metrics": response_metrics(inc, evidence.notified_at),
    }


def metric_lines(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    shown = []
    for key, label in METRICS:
        value = metrics.get(key)
        shown.append((label, format_duration(value) if value is not None else "—"))
    return shown
