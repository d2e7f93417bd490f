"""Incident lifecycle: open, acknowledge, change severity or commander, post
status updates, mitigate, resolve; every change lands in the timeline, the
incident's message is edited in place, and it is audited."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core import audit
from bot.core.audit import Actor
from bot.core.chat import Message
from bot.core.clock import Clock
from bot.core.config import Config, Role
from bot.core.db import Database
from bot.core.errors import ChatOpsError, NotFound, Refused
from bot.core.events import DeployFinished, EventHub, IncidentChanged
from bot.core.outbox import Outbox
from bot.core.rbac import Authorizer
from bot.core.scheduler import Scheduler
from bot.incidents.models import OPEN_STATUSES, Alert, Incident, IncidentEvent, IncidentStatus
from bot.incidents.render import render_incident

AUTO_RESOLVE = "incident.auto_resolve"
OPEN_CHANNEL = "incident.open_channel"
_ORDER = [
    IncidentStatus.DECLARED,
    IncidentStatus.TRIGGERED,
    IncidentStatus.ACKNOWLEDGED,
    IncidentStatus.MITIGATED,
    IncidentStatus.RESOLVED,
]


class ChannelMaker(Protocol):
    async def create_channel(self, name: str) -> str: ...

    async def invite(self, channel: str, users: list[str]) -> None: ...


def parse_ref(text: str) -> int:
    raw = text.strip().upper().removeprefix("INC-").removeprefix("#")
    if not raw.isdigit():
        raise ChatOpsError(f"'{text}' is not an incident (they look like INC-3).")
    return int(raw)


class IncidentService:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        config: Config,
        outbox: Outbox,
        scheduler: Scheduler,
        auth: Authorizer,
        events: EventHub,
    ) -> None:
        self.db, self.clock, self.config, self.outbox = db, clock, config, outbox
        self.scheduler, self.auth, self.events = scheduler, auth, events
        scheduler.handler(AUTO_RESOLVE)(self._auto_resolve)
        scheduler.handler(OPEN_CHANNEL)(self._open_channel)
        self.channels: ChannelMaker | None = None  # Slack, when it is configured

    # -- shared pieces ------------------------------------------------------------

    async def message(self, session: AsyncSession, inc: Incident) -> Message:
        counts = (
            await session.exec(
                select(Alert.status, func.count())
                .where(Alert.incident_id == inc.id)
                .group_by(col(Alert.status))
            )
        ).all()
        by_status = {status: int(n) for status, n in counts}
        return render_incident(
            inc,
            firing=by_status.get("firing", 0),
            total=sum(by_status.values()),
            shown_labels=self.config.alerts.shown_labels,
        )

    async def refresh(self, session: AsyncSession, inc: Incident) -> None:
        await self.outbox.update(session, inc.ref, await self.message(session, inc))

    async def note(self, session: AsyncSession, inc: Incident, text: str | Message) -> None:
        message = text if isinstance(text, Message) else Message(text=text)
        await self.outbox.post(session, "", message, thread_key=inc.ref)

    async def timeline(
        self,
        session: AsyncSession,
        inc: Incident,
        kind: str,
        text: str,
        *,
        actor: str | None = None,
        data: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        session.add(
            IncidentEvent(
                incident_id=inc.id or 0,
                at=at or self.clock.now(),
                kind=kind,
                actor=actor,
                text=text,
                data=data or {},
            )
        )

    async def open(
        self, session: AsyncSession, inc: Incident, *, actor: str | None, how: str
    ) -> None:
        """Store a new incident, post its home message, start its timeline."""
        session.add(inc)
        await session.flush()
        await self.outbox.post(session, inc.channel, await self.message(session, inc), key=inc.ref)
        await self.timeline(
            session, inc, "status", f"{inc.status}: {how}", actor=actor, at=inc.detected_at
        )
        await self.events.emit(
            session,
            IncidentChanged(
                inc.id or 0, "opened", inc.status, inc.severity, None, actor, self.clock.now()
            ),
        )
        if self.config.alerts.dedicated_channels:
            await self.scheduler.schedule(
                session, OPEN_CHANNEL, {"id": inc.id}, key=f"channel-{inc.id}"
            )

    async def set_status(
        self,
        session: AsyncSession,
        inc: Incident,
        status: IncidentStatus,
        reason: str,
        *,
        actor: str | None,
    ) -> None:
        previous = inc.status
        now = self.clock.now()
        inc.status = status
        if status == IncidentStatus.ACKNOWLEDGED and inc.acknowledged_at is None:
            inc.acknowledged_at, inc.acknowledged_by = now, actor
        if status == IncidentStatus.MITIGATED and inc.mitigated_at is None:
            inc.mitigated_at = now
        if status == IncidentStatus.RESOLVED:
            inc.resolved_at = now
            inc.mitigated_at = inc.mitigated_at or now
        session.add(inc)
        # The same instant as the field it sets, so reports agree with the timeline.
        await self.timeline(
            session, inc, "status", f"{previous} → {status}: {reason}", actor=actor, at=now
        )
        await self.note(session, inc, f"{_icon(status)} {inc.ref} is {status}: {reason}")
        await self.refresh(session, inc)
        await self.events.emit(
            session,
            IncidentChanged(inc.id or 0, "status", status, inc.severity, previous, actor, now),
        )
        policy = self.config.alerts
        if status == IncidentStatus.MITIGATED and policy.auto_resolve_after is not None:
            await self.scheduler.schedule(
                session,
                AUTO_RESOLVE,
                {"id": inc.id},
                delay=policy.auto_resolve_after.total_seconds(),
                key=f"autoresolve-{inc.id}",
            )
        elif status != IncidentStatus.MITIGATED:
            await self.scheduler.cancel(session, f"autoresolve-{inc.id}")

    # -- lookups --------------------------------------------------------------------

    async def get(self, ref: int | str) -> Incident:
        incident_id = ref if isinstance(ref, int) else parse_ref(ref)
        async with self.db.transaction() as session:
            inc = await session.get(Incident, incident_id)
        if inc is None:
            raise NotFound(f"There is no INC-{incident_id}.")
        return inc

    async def find_for_channel(self, channel: str) -> Incident | None:
        """The open incident whose dedicated channel this is, if any."""
        async with self.db.transaction() as session:
            return (
                await session.exec(
                    select(Incident).where(
                        Incident.dedicated_channel == channel,
                        col(Incident.status).in_(OPEN_STATUSES),
                    )
                )
            ).first()

    async def list(self, *, open_only: bool, limit: int = 20) -> Sequence[Incident]:
        query = select(Incident).order_by(col(Incident.id).desc()).limit(limit)
        if open_only:
            query = query.where(col(Incident.status).in_(OPEN_STATUSES))
        async with self.db.transaction() as session:
            return (await session.exec(query)).all()

    async def events_of(self, incident_id: int) -> Sequence[IncidentEvent]:
        async with self.db.transaction() as session:
            return (
                await session.exec(
                    select(IncidentEvent)
                    .where(IncidentEvent.incident_id == incident_id)
                    .order_by(col(IncidentEvent.at), col(IncidentEvent.id))
                )
            ).all()

    # -- what people do -------------------------------------------------------------

    async def _authorize(self, who: Actor, action: str, inc: Incident | None = None) -> None:
        """Anyone with a role in some environment may respond to incidents;
        `default_role: none` in the config keeps strangers out."""
        roles = [await self.auth.role_of(who.user, e.name) for e in self.config.environments]
        if not any(r is not None and r >= Role.VIEWER for r in roles):
            raise Refused(
                "You have no role in this bot's configuration, so you cannot change incidents.",
                action=action,
                target=inc.ref if inc else None,
                reason="forbidden",
            )

    async def _audit(
        self, session: AsyncSession, who: Actor, action: str, inc: Incident, **detail: Any
    ) -> None:
        await audit.by(
            session, who, at=self.clock.now(), action=action, target=inc.ref, detail=detail
        )

    async def declare(self, who: Actor, title: str, severity: str, service: str | None) -> Incident:
        await self._authorize(who, "incident.declare")
        severity = _severity(self.config, severity)
        if service and self.config.service(service) is None:
            raise ChatOpsError(f"There is no service '{service}'.")
        now = self.clock.now()
        async with self.db.transaction() as session:
            inc = Incident(
                title=title,
                service=service,
                severity=severity,
                status=IncidentStatus.DECLARED,
                source="declared",
                commander=who.user,
                responders=[who.user],
                channel=self.config.channels.incidents,
                opened_by=who.user,
                detected_at=now,
            )
            await self.open(session, inc, actor=who.user, how=f"declared by <@{who.user}>")
            await self._audit(session, who, "incident.declare", inc, severity=severity)
        return inc

    async def acknowledge(self, who: Actor, ref: int) -> Incident:
        async with self._locked(ref) as (session, inc):
            await self._authorize(who, "incident.ack", inc)
            if inc.status not in (IncidentStatus.TRIGGERED, IncidentStatus.DECLARED):
                raise ChatOpsError(f"{inc.ref} is {inc.status}; nothing to acknowledge.")
            _add_responder(inc, who.user)
            await self.set_status(
                session,
                inc,
                IncidentStatus.ACKNOWLEDGED,
                f"acknowledged by <@{who.user}>",
                actor=who.user,
            )
            await self._audit(session, who, "incident.ack", inc)
        return inc

    async def set_severity(self, who: Actor, ref: int, severity: str) -> Incident:
        severity = _severity(self.config, severity)
        async with self._locked(ref) as (session, inc):
            await self._authorize(who, "incident.severity", inc)
            if inc.severity == severity:
                raise ChatOpsError(f"{inc.ref} is already {severity}.")
            previous, inc.severity = inc.severity, severity
            session.add(inc)
            await self.timeline(
                session, inc, "severity", f"{previous} → {severity}", actor=who.user
            )
            await self.note(session, inc, f"Severity {previous} → {severity} by <@{who.user}>")
            await self.refresh(session, inc)
            await self.events.emit(
                session,
                IncidentChanged(
                    inc.id or 0,
                    "severity",
                    inc.status,
                    severity,
                    previous,
                    who.user,
                    self.clock.now(),
                ),
            )
            await self._audit(
                session, who, "incident.severity", inc, previous=previous, severity=severity
            )
        return inc

    async def set_commander(self, who: Actor, ref: int, user: str) -> Incident:
        async with self._locked(ref) as (session, inc):
            await self._authorize(who, "incident.commander", inc)
            previous, inc.commander = inc.commander, user
            _add_responder(inc, user)
            session.add(inc)
            await self.timeline(
                session,
                inc,
                "commander",
                f"<@{user}> is commander" + (f" (was <@{previous}>)" if previous else ""),
                actor=who.user,
            )
            await self.note(session, inc, f":crown: <@{user}> is now the incident commander.")
            await self.refresh(session, inc)
            await self._audit(
                session, who, "incident.commander", inc, commander=user, previous=previous
            )
        return inc

    async def post_update(self, who: Actor, ref: int, text: str) -> Incident:
        async with self._locked(ref) as (session, inc):
            await self._authorize(who, "incident.update", inc)
            _add_responder(inc, who.user)
            session.add(inc)
            await self.timeline(session, inc, "update", text, actor=who.user)
            await self.outbox.post(
                session,
                "",
                Message(text=f":memo: Status update from <@{who.user}>: {text}"),
                thread_key=inc.ref,
                broadcast=True,
            )
            await self._audit(session, who, "incident.update", inc)
        return inc

    async def mitigate(self, who: Actor, ref: int) -> Incident:
        async with self._locked(ref) as (session, inc):
            await self._authorize(who, "incident.mitigate", inc)
            if inc.status in (IncidentStatus.MITIGATED, IncidentStatus.RESOLVED):
                raise ChatOpsError(f"{inc.ref} is already {inc.status}.")
            await self.set_status(
                session,
                inc,
                IncidentStatus.MITIGATED,
                f"mitigated by <@{who.user}>",
                actor=who.user,
            )
            await self._audit(session, who, "incident.mitigate", inc)
        return inc

    async def resolve(self, who: Actor, ref: int, summary: str | None) -> Incident:
        async with self._locked(ref) as (session, inc):
            await self._authorize(who, "incident.resolve", inc)
            if inc.status == IncidentStatus.RESOLVED:
                raise ChatOpsError(f"{inc.ref} is already resolved.")
            if summary:
                inc.summary = summary
            await self.set_status(
                session,
                inc,
                IncidentStatus.RESOLVED,
                f"resolved by <@{who.user}>" + (f": {summary}" if summary else ""),
                actor=who.user,
            )
            await self._audit(session, who, "incident.resolve", inc, summary=summary)
        return inc

    async def on_deploy(self, session: AsyncSession, event: DeployFinished) -> None:
        """Deploys and rollbacks of a service show up in its open incidents."""
        rows = (
            await session.exec(
                select(Incident).where(
                    Incident.service == event.service, col(Incident.status).in_(OPEN_STATUSES)
                )
            )
        ).all()
        what = "Rollback" if event.kind == "rollback" else "Deploy"
        text = (
            f"{what} #{event.deployment_id} of {event.service} {event.version} in "
            f"{event.environment}: {event.outcome} (by <@{event.actor}>)"
        )
        for inc in rows:
            await self.timeline(
                session,
                inc,
                "deploy",
                text,
                actor=event.actor,
                data={
                    "deployment": event.deployment_id,
                    "kind": event.kind,
                    "outcome": event.outcome,
                    "version": event.version,
                },
                at=event.at,
            )
            await self.note(session, inc, f":rocket: {text}")

    async def pin(
        self, session: AsyncSession, inc: Incident, *, user: str, text: str, ts: str
    ) -> None:
        await self.timeline(session, inc, "pin", text[:2000], actor=user, data={"ts": ts})

    def _locked(self, ref: int) -> _Locked:
        return _Locked(self, ref)

    async def _open_channel(self, job: Any) -> None:
        """A channel of its own for the incident, with its people invited.
        Retried by the scheduler if Slack fails; idempotent (name_taken finds it)."""
        async with self.db.transaction() as session:
            inc = await session.get(Incident, int(job.payload["id"]))
        if inc is None or self.channels is None or inc.dedicated_channel:
            return
        slug = "".join(c if c.isalnum() else "-" for c in inc.title.lower()).strip("-")
        name = f"inc-{inc.id}-{slug}"[:80].rstrip("-")
        channel = await self.channels.create_channel(name)
        people = sorted({*inc.responders, *([inc.commander] if inc.commander else [])})
        if people:
            await self.channels.invite(channel, people)
        async with job.transaction() as session:
            row = await session.get(Incident, inc.id, with_for_update=True)
            if row is not None:
                row.dedicated_channel = channel
                session.add(row)
                await self.timeline(session, row, "channel", f"channel <#{channel}> opened")
                await self.note(session, row, f"Working channel: <#{channel}>")
                await self.outbox.post(
                    session,
                    channel,
                    Message(
                        text=f"This channel is for {row.ref} ({row.severity}): {row.title}. "
                        f"Commands here apply to {row.ref}."
                    ),
                )
            await job.finish(session)

    async def _auto_resolve(self, job: Any) -> None:
        async with job.transaction() as session:
            inc = await session.get(Incident, int(job.payload["id"]), with_for_update=True)
            if inc is not None and inc.status == IncidentStatus.MITIGATED:
                quiet = self.config.alerts.auto_resolve_after
                await self.set_status(
                    session,
                    inc,
                    IncidentStatus.RESOLVED,
                    f"no alert for {quiet}; resolved automatically",
                    actor=None,
                )
            await job.finish(session)


class _Locked:
    """`async with service._locked(ref) as (session, incident)`: one
    transaction with the incident row locked, so two buttons pressed at
    once apply one after the other."""

    def __init__(self, service: IncidentService, ref: int) -> None:
        self.service, self.ref = service, ref

    async def __aenter__(self) -> tuple[AsyncSession, Incident]:
        self._tx = self.service.db.transaction()
        session = await self._tx.__aenter__()
        inc = await session.get(Incident, self.ref, with_for_update=True)
        if inc is None:
            await self._tx.__aexit__(None, None, None)
            raise NotFound(f"There is no INC-{self.ref}.")
        return session, inc

    async def __aexit__(self, *exc: Any) -> None:
        await self._tx.__aexit__(*exc)


def _add_responder(inc: Incident, user: str) -> None:
    if user not in inc.responders:
        inc.responders = [*inc.responders, user]


def _severity(config: Config, text: str) -> str:
    raw = text.strip().upper()
    name = raw if raw.startswith("SEV") else f"SEV{raw.removeprefix('P')}"
    if raw.startswith("P") and raw[1:].isdigit():
        name = f"SEV{int(raw[1:]) + 1}"  # P0 is SEV1, as the seed's scale has it
    known = [s.name for s in config.severities]
    if name not in known:
        raise ChatOpsError(f"'{text}' is not a severity (one of: {', '.join(known)}).")
    return name


def _icon(status: IncidentStatus) -> str:
    return {
        IncidentStatus.ACKNOWLEDGED: ":eyes:",
        IncidentStatus.MITIGATED: ":adhesive_bandage:",
        IncidentStatus.RESOLVED: ":white_check_mark:",
    }.get(status, ":rotating_light:")
