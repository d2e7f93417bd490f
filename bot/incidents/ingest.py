"""Alertmanager notifications in: stored once, answered, then processed.

`accept` runs in the webhook request: it stores the notification under a
key derived from its content (receiver, groupKey, status and every alert's
fingerprint, startsAt and status), so the same delivery repeated, retried or
duplicated by an HA pair is stored once; processing is a scheduler job.

Processing locks the alert group's row, so notifications of one group apply
in turn, whichever replica runs them; it opens the incident (or posts, for
severities that open none), records every alert by fingerprint + startsAt,
notes joins and resolutions in a coalesced digest, and mitigates the
incident when all its alerts have resolved.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.chat import Message
from bot.core.scheduler import JobContext
from bot.incidents.models import (
    Alert,
    AlertGroup,
    AlertNotification,
    Incident,
    IncidentEvent,
    IncidentStatus,
)
from bot.incidents.routing import route_alert
from bot.incidents.service import IncidentService
from integrations.alertmanager import WebhookAlert, WebhookPayload

log = logging.getLogger("chatops.alerts")

PROCESS = "alerts.process"
DIGEST = "incident.digest"
DIGEST_DELAY = 3.0  # seconds: at most one "alerts changed" message per incident this often


def dedupe_key(payload: WebhookPayload) -> str:
    alerts = sorted((a.fingerprint, a.starts_at.isoformat(), a.status) for a in payload.alerts)
    raw = json.dumps([payload.receiver, payload.group_key, payload.status, alerts])
    return hashlib.sha256(raw.encode()).hexdigest()


def group_hash(receiver: str, group_key: str) -> str:
    return hashlib.sha256(f"{receiver}\x00{group_key}".encode()).hexdigest()


class AlertIngest:
    def __init__(self, incidents: IncidentService) -> None:
        self.incidents = incidents
        self.db, self.clock, self.config = incidents.db, incidents.clock, incidents.config
        incidents.scheduler.handler(PROCESS)(self._process)
        incidents.scheduler.handler(DIGEST)(self._digest)

    async def accept(self, payload: WebhookPayload, raw: dict[str, Any]) -> bool:
        """Store the notification; False when it was a duplicate."""
        key = dedupe_key(payload)
        async with self.db.transaction() as session:
            if (
                await session.exec(
                    select(AlertNotification.id).where(AlertNotification.dedupe_key == key)
                )
            ).first() is not None:
                return False
            row = AlertNotification(
                dedupe_key=key,
                receiver=payload.receiver,
                group_key=payload.group_key,
                status=payload.status,
                payload=raw,
                received_at=self.clock.now(),
            )
            try:
                async with session.begin_nested():
                    session.add(row)
            except IntegrityError:
                return False  # a parallel delivery of the same notification won
            await self.incidents.scheduler.schedule(
                session, PROCESS, {"id": row.id}, key=f"alerts-{row.id}"
            )
        return True

    # -- processing -----------------------------------------------------------------

    async def _process(self, job: JobContext) -> None:
        async with job.transaction() as session:
            note = await session.get(AlertNotification, int(job.payload["id"]))
            if note is None or note.processed_at is not None:
                await job.finish(session)
                return
            group = await self._lock_group(session, WebhookPayload.model_validate(note.payload))
            # Each notification is a snapshot of its group: apply them in the
            # order they arrived, or an older snapshot could undo a newer one
            # (an alert resolved, then "firing" again from a stale delivery).
            # Whoever holds the group's lock applies every pending one up to its own.
            pending = (await session.exec(
                select(AlertNotification)
                .where(AlertNotification.receiver == note.receiver,
                       AlertNotification.group_key == note.group_key,
                       col(AlertNotification.processed_at).is_(None),
                       col(AlertNotification.id) <= note.id)
                .order_by(col(AlertNotification.id)))).all()
            for earlier in pending:
                await self._apply(session, group, WebhookPayload.model_validate(earlier.payload))
                earlier.processed_at = self.clock.now()
                group.last_notification_at = earlier.received_at
                session.add(earlier)
                await session.flush()
            session.add(group)
            await job.finish(session)

    async def _lock_group(self, session: AsyncSession, payload: WebhookPayload) -> AlertGroup:
        ghash = group_hash(payload.receiver, payload.group_key)
        insert = (postgresql.insert if self.db.is_postgres else sqlite.insert)(AlertGroup)
        await session.exec(
            insert.values(
                group_hash=ghash,
                receiver=payload.receiver,
                group_key=payload.group_key,
            ).on_conflict_do_nothing()
        )
        return (
            await session.exec(
                select(AlertGroup).where(AlertGroup.group_hash == ghash).with_for_update()
            )
        ).one()

    async def _apply(
        self, session: AsyncSession, group: AlertGroup, payload: WebhookPayload
    ) -> None:
        incidents, now = self.incidents, self.clock.now()
        inc = (
            await session.get(Incident, group.incident_id, with_for_update=True)
            if group.incident_id
            else None
        )
        firing = [a for a in payload.alerts if a.status == "firing"]
        if inc is not None and inc.status == IncidentStatus.RESOLVED:
            window = self.config.alerts.reopen_within
            if (
                firing
                and window is not None
                and inc.resolved_at
                and now - inc.resolved_at <= window
            ):
                await incidents.set_status(
                    session, inc, IncidentStatus.TRIGGERED, "its alerts fire again", actor=None
                )
            else:
                inc = None  # a resolved group firing again is a new incident
        created = False
        if inc is None:
            if not firing:
                return  # resolutions of alerts we never opened anything for
            route = route_alert(self.config, payload.common_labels or firing[0].labels)
            if not route.opens_incident:
                await self._post_only(session, payload, route.severity, route.channel)
                return
            inc = _incident_from(payload, firing, route.service, route.severity, route.channel)
            await incidents.open(
                session,
                inc,
                actor=None,
                how=f"opened from {len(firing)} alert(s) ({payload.receiver})",
            )
            group.incident_id = inc.id
            created = True
        joined, resolved = await self._record_alerts(session, group, inc, payload, created)
        if joined or resolved:
            await incidents.scheduler.schedule(
                session,
                DIGEST,
                {"id": inc.id},
                delay=DIGEST_DELAY,
                key=f"digest-{inc.id}",
                replace=False,
            )
        if inc.status in (IncidentStatus.TRIGGERED, IncidentStatus.ACKNOWLEDGED):
            still = (
                await session.exec(
                    select(Alert.id)
                    .where(Alert.incident_id == inc.id, Alert.status == "firing")
                    .limit(1)
                )
            ).first()
            if still is None:
                await incidents.set_status(
                    session, inc, IncidentStatus.MITIGATED, "every alert has resolved", actor=None
                )
                return
        elif inc.status == IncidentStatus.MITIGATED and joined:
            await incidents.set_status(
                session, inc, IncidentStatus.TRIGGERED, "alerts are firing again", actor=None
            )
            return
        await incidents.refresh(session, inc)

    async def _record_alerts(
        self,
        session: AsyncSession,
        group: AlertGroup,
        inc: Incident,
        payload: WebhookPayload,
        created: bool,
    ) -> tuple[int, int]:
        now = self.clock.now()
        existing = {
            (a.fingerprint, a.starts_at): a
            for a in (
                await session.exec(
                    select(Alert).where(Alert.group_id == group.id, Alert.incident_id == inc.id)
                )
            ).all()
        }
        joined = resolved = 0
        for wa in payload.alerts:
            row = existing.get((wa.fingerprint, wa.starts_at))
            if row is None:
                row = Alert(
                    group_id=group.id or 0,
                    incident_id=inc.id,
                    fingerprint=wa.fingerprint,
                    starts_at=wa.starts_at,
                    ends_at=wa.ended,
                    status=wa.status,
                    labels=wa.labels,
                    annotations=wa.annotations,
                    generator_url=wa.generator_url,
                    first_seen=now,
                    last_seen=now,
                )
                session.add(row)
                existing[(wa.fingerprint, wa.starts_at)] = row
                if wa.status == "firing" and not created:
                    joined += 1
                    await self.incidents.timeline(
                        session,
                        inc,
                        "alert",
                        f"alert joined: {_describe(wa)}",
                        data={"fingerprint": wa.fingerprint, "digest": True},
                    )
                continue
            row.last_seen = now
            if row.status != wa.status:
                row.status, row.ends_at = wa.status, wa.ended
                if wa.status == "resolved":
                    resolved += 1
                    await self.incidents.timeline(
                        session,
                        inc,
                        "alert",
                        f"alert resolved: {_describe(wa)}",
                        data={"fingerprint": wa.fingerprint, "digest": True},
                    )
            session.add(row)
        await session.flush()
        return joined, resolved

    async def _post_only(
        self, session: AsyncSession, payload: WebhookPayload, severity: str, channel: str
    ) -> None:
        first = payload.alerts[0]
        title = first.annotations.get("summary") or first.labels.get("alertname", "alert")
        await self.incidents.outbox.post(
            session,
            channel,
            Message(
                text=f":information_source: {severity} {payload.status}: {title} "
                f"({len(payload.alerts)} alert(s); {severity} opens no incident)"
            ),
        )

    async def _digest(self, job: JobContext) -> None:
        """One thread message for everything that changed since the last one."""
        async with job.transaction() as session:
            inc = await session.get(Incident, int(job.payload["id"]))
            if inc is None:
                await job.finish(session)
                return
            events = [
                e
                for e in (
                    await session.exec(
                        select(IncidentEvent)
                        .where(IncidentEvent.incident_id == inc.id, IncidentEvent.kind == "alert")
                        .order_by(col(IncidentEvent.id))
                    )
                ).all()
                if e.data.get("digest")
            ]
            if events:
                shown = [e.text for e in events[:10]]
                more = f"\n… and {len(events) - 10} more" if len(events) > 10 else ""
                await self.incidents.note(session, inc, "\n".join(shown) + more)
                for e in events:
                    e.data = {**e.data, "digest": False}
                    session.add(e)
            await job.finish(session)


def _incident_from(
    payload: WebhookPayload,
    firing: list[WebhookAlert],
    service: str | None,
    severity: str,
    channel: str,
) -> Incident:
    first = firing[0]
    labels = {**first.labels, **payload.common_labels}
    annotations = {**first.annotations, **payload.common_annotations}
    title = (
        annotations.get("summary") or annotations.get("title") or labels.get("alertname", "Alert")
    )
    links: dict[str, str] = {}
    if first.generator_url:
        links["source"] = first.generator_url
    for name in ("runbook_url", "runbook", "dashboard_url", "dashboard", "grafana_url"):
        value = annotations.get(name)
        if value and value.startswith(("http://", "https://")):
            links[name.removesuffix("_url")] = value
    if annotations.get("runbook") and "runbook" not in links:
        # A plain name (not a link) names one of the bot's own runbooks.
        links["runbook_name"] = annotations["runbook"][:200]
    return Incident(
        title=title[:500],
        service=service,
        severity=severity,
        status=IncidentStatus.TRIGGERED,
        source="alert",
        channel=channel,
        labels=labels,
        links=links,
        opened_by=payload.receiver,
        detected_at=min(a.starts_at for a in firing),
    )


def _describe(alert: WebhookAlert) -> str:
    name = alert.labels.get("alertname", "alert")
    extra = ", ".join(
        f"{k}={v}" for k, v in sorted(alert.labels.items()) if k not in ("alertname", "severity")
    )[:200]
    return f"{name} {{{extra}}}" if extra else name
