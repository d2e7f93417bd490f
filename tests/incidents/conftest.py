"""Incident fixtures: Alertmanager-shaped payloads, posted like Alertmanager posts them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from sqlmodel import col, select

from bot.incidents.models import Alert, Incident, IncidentEvent
from tests.conftest import RunningBot, eventually

TOKEN = "test-webhook-token"


def alert(
    name: str = "CheckoutErrors",
    *,
    fingerprint: str | None = None,
    status: str = "firing",
    severity: str = "critical",
    service: str = "checkout",
    started: datetime | None = None,
    **labels: str,
) -> dict[str, Any]:
    started = started or datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    all_labels = {"alertname": name, "severity": severity, "service": service, **labels}
    return {
        "status": status,
        "labels": all_labels,
        "annotations": {
            "summary": f"{name} on {service}",
            "runbook_url": "https://runbooks.example.com/checkout-errors",
        },
        "startsAt": started.isoformat().replace("+00:00", "Z"),
        "endsAt": (started + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
        if status == "resolved"
        else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example.com/graph?g0.expr=up",
        "fingerprint": fingerprint or f"fp-{name}-{sorted(labels.items())}"[:60],
    }


def notification(
    alerts: list[dict[str, Any]],
    *,
    group_key: str = '{}:{alertname="CheckoutErrors"}',
    receiver: str = "chatops",
    **extra: Any,
) -> dict[str, Any]:
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": receiver,
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]},
        "commonLabels": {
            k: v
            for k, v in alerts[0]["labels"].items()
            if all(a["labels"].get(k) == v for a in alerts)
        },
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com",
        "alerts": alerts,
        **extra,
    }


async def post(
    rb: RunningBot,
    body: Any,
    *,
    token: str | None = TOKEN,
    raw: bytes | None = None,
    basic: tuple[str, str] | None = None,
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if basic:
        headers["Authorization"] = aiohttp.encode_basic_auth(*basic)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            rb.url + "/webhooks/alertmanager",
            json=None if raw is not None else body,
            data=raw,
            headers=headers,
        ) as resp,
    ):
        try:
            answer = await resp.json(content_type=None)
        except ValueError:
            answer = await resp.text()
        return resp.status, answer


async def incidents(rb: RunningBot) -> list[Incident]:
    async with rb.bot.db.transaction() as s:
        return list((await s.exec(select(Incident).order_by(col(Incident.id)))).all())


async def alerts(rb: RunningBot) -> list[Alert]:
    async with rb.bot.db.transaction() as s:
        return list((await s.exec(select(Alert).order_by(col(Alert.id)))).all())


async def timeline(rb: RunningBot, incident_id: int = 1) -> list[IncidentEvent]:
    async with rb.bot.db.transaction() as s:
        return list(
            (
                await s.exec(
                    select(IncidentEvent)
                    .where(IncidentEvent.incident_id == incident_id)
                    .order_by(col(IncidentEvent.id))
                )
            ).all()
        )


async def settled(rb: RunningBot, timeout: float = 15) -> None:
    """Every stored notification processed and every message delivered."""
    from bot.incidents.models import AlertNotification

    async def done() -> bool:
        async with rb.bot.db.transaction() as s:
            pending = (
                await s.exec(
                    select(AlertNotification).where(col(AlertNotification.processed_at).is_(None))
                )
            ).first()
        messages, _ = await rb.bot.pending_work(timedelta(0))
        return pending is None and messages == 0

    await eventually(done, timeout=timeout)


async def incident_command(rb: RunningBot, text: str, user: str = "UALICE") -> str:
    """Run `/incident <text>` and return its reply. The HTTP answer is only the
    ack; waiting for the reply is what says the command's work is committed."""
    name = f"c{len(rb.slack.calls())}"
    await rb.requests.command(
        "/incident", text, user=user, response_url=rb.slack.response_url(name)
    )
    [call] = await rb.slack.wait_for("response_url", lambda c: c.name == name)
    return str(call.body["text"])
