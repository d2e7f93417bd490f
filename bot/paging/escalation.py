"""Escalations: when an incident's severity pages, the policy's steps page
their targets one after another until somebody acknowledges.

Every step is a scheduler job whose successor is due at this step's own due
time plus the step's delay (not "now plus delay"), so after a restart the
next step still fires at its original time, once. Acknowledging stops the
escalation; an acknowledged incident that stays unresolved pages its
acknowledger again after the severity's ack timeout; resolving stops all.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.chat import Message
from bot.core.clock import Clock
from bot.core.config import Config, EscalationPolicy, Target
from bot.core.db import Database
from bot.core.events import IncidentChanged
from bot.core.rbac import GroupDirectory
from bot.core.scheduler import JobContext, Scheduler
from bot.incidents.models import Incident, IncidentStatus
from bot.incidents.service import IncidentService
from bot.paging.models import Escalation, EscalationStatus, OnCallOverride, Page
from bot.paging.pages import BUNDLE, EXTERNAL, Pager, deliver_external
from bot.paging.schedules import Override, on_call
from integrations import pager_webhook

log = logging.getLogger("chatops.paging")

STEP = "page.step"
ACK_TIMEOUT = "page.ack_timeout"
_PAGEABLE = (IncidentStatus.TRIGGERED, IncidentStatus.DECLARED)


class Escalator:
    def __init__(self, *, db: Database, clock: Clock, config: Config, scheduler: Scheduler,
                 incidents: IncidentService, pager: Pager,
                 groups: GroupDirectory | None = None, public_url: str | None = None) -> None:
        self.db, self.clock, self.config, self.scheduler = db, clock, config, scheduler
        self.incidents, self.pager, self.groups = incidents, pager, groups
        self.public_url = public_url
        scheduler.handler(STEP)(self._step)
        scheduler.handler(ACK_TIMEOUT)(self._ack_timeout)
        scheduler.handler(BUNDLE)(self._bundle)
        scheduler.handler(EXTERNAL)(self._external)

    # -- reacting to incidents (runs inside the incident's own transaction) ------

    async def on_incident(self, session: AsyncSession, event: IncidentChanged) -> None:
        severity = self.config.severity(event.severity)
        pages = bool(severity and severity.page)
        if event.change in ("opened", "severity") or (
                event.change == "status" and event.status in _PAGEABLE):
            if pages and event.status in _PAGEABLE:
                await self.start(session, event.incident_id)
            elif not pages:
                await self.stop(session, event.incident_id, EscalationStatus.CANCELLED,
                                f"{event.severity} does not page")
            return
        if event.change != "status":
            return
        if event.status == IncidentStatus.ACKNOWLEDGED:
            await self.stop(session, event.incident_id, EscalationStatus.ACKNOWLEDGED,
                            f"acknowledged by <@{event.actor}>" if event.actor else "acknowledged")
            await self._mark_acked(session, event.incident_id, event.at)
            if severity and severity.ack_timeout is not None and event.actor:
                await self.scheduler.schedule(
                    session, ACK_TIMEOUT, {"incident": event.incident_id, "user": event.actor},
                    delay=severity.ack_timeout.total_seconds(),
                    key=f"acktimeout-{event.incident_id}")
        elif event.status in (IncidentStatus.MITIGATED, IncidentStatus.RESOLVED):
            await self.stop(session, event.incident_id, EscalationStatus.CANCELLED,
                            f"incident {event.status.lower()}")
            await self.scheduler.cancel(session, f"acktimeout-{event.incident_id}")

    async def start(self, session: AsyncSession, incident_id: int) -> None:
        if await self._active(session, incident_id) is not None:
            return
        inc = await session.get(Incident, incident_id)
        if inc is None:
            return
        policy = self._policy_for(inc)
        if policy is None:
            await self.incidents.note(session, inc, ":warning: This severity pages, but no "
                                      "escalation policy is configured: nobody was paged.")
            return
        now = self.clock.now()
        esc = Escalation(incident_id=incident_id, policy=policy.name, started_at=now, next_at=now)
        session.add(esc)
        await session.flush()
        severity = self.config.severity(inc.severity)
        if severity and severity.announce:
            await self.incidents.outbox.post(session, inc.channel, Message(
                text=f"<!here> {inc.ref} {inc.severity}: {inc.title} — paging on-call"))
        await self.scheduler.schedule(session, STEP, {"escalation": esc.id}, due_at=now,
                                      key=f"escalate-{incident_id}")

    async def stop(self, session: AsyncSession, incident_id: int, status: EscalationStatus,
                   reason: str) -> None:
        esc = await self._active(session, incident_id)
        if esc is None:
            return
        esc.status, esc.finished_at, esc.next_at = status, self.clock.now(), None
        session.add(esc)
        await self.scheduler.cancel(session, f"escalate-{incident_id}")
        inc = await session.get(Incident, incident_id)
        if inc is not None:
            await self.incidents.timeline(session, inc, "paging", f"escalation stopped: {reason}")

    async def escalate_now(self, session: AsyncSession, incident_id: int) -> bool:
        esc = await self._active(session, incident_id)
        if esc is None:
            return False
        await self.scheduler.schedule(session, STEP, {"escalation": esc.id},
                                      due_at=self.clock.now(), key=f"escalate-{incident_id}")
        return True

    # -- the steps -------------------------------------------------------------------

    async def _step(self, job: JobContext) -> None:
        async with self.db.transaction() as session:
            esc = await session.get(Escalation, int(job.payload["escalation"]))
            inc = await session.get(Incident, esc.incident_id) if esc else None
            overrides = await self._overrides(session)
        if esc is None or inc is None or esc.status != EscalationStatus.ACTIVE:
            return
        policy = self.config.oncall.policy(esc.policy)
        if policy is None or inc.status not in _PAGEABLE:
            return
        due = job.job.due_at
        if esc.step >= len(policy.steps):
            await self._exhaust(job, esc, inc, policy)
            return
        step = policy.steps[esc.step]
        targets = await self._resolve(step.targets, due, overrides)  # network: outside the tx
        async with job.transaction() as session:
            esc = await session.get(Escalation, esc.id, with_for_update=True)
            inc = await session.get(Incident, inc.id)
            if esc is None or inc is None or esc.status != EscalationStatus.ACTIVE \
                    or inc.status not in _PAGEABLE:
                await job.finish(session)
                return
            label = f"step {esc.step + 1}/{len(policy.steps)}" + (
                f", repeat {esc.round}" if esc.round else "")
            sent: list[str] = []
            held: list[str] = []
            for target in targets:
                ok = await self.pager.send(session, inc, target, kind="escalation",
                                           why=f"{policy.name} {label}", now=self.clock.now(),
                                           escalation_id=esc.id, step=esc.step,
                                           round_=esc.round)
                (sent if ok else held).append(target)
            text = (f"Paged {', '.join(_who(t) for t in sent) or 'nobody'} ({label})"
                    + (f"; held back by the page limit: {', '.join(_who(t) for t in held)}"
                       if held else "")
                    + ("" if targets else ": the step's targets resolved to nobody"))
            await self.incidents.timeline(session, inc, "paging", text)
            await self.incidents.note(session, inc, f":pager: {text}")
            esc.step += 1
            if esc.step >= len(policy.steps) and esc.round < policy.repeat:
                esc.step, esc.round = 0, esc.round + 1
            esc.next_at = due + step.delay
            session.add(esc)
            await self.scheduler.schedule(session, STEP, {"escalation": esc.id},
                                          due_at=esc.next_at, key=f"escalate-{inc.id}")
            await job.finish(session)

    async def _exhaust(self, job: JobContext, esc: Escalation, inc: Incident,
                       policy: EscalationPolicy) -> None:
        async with job.transaction() as session:
            row = await session.get(Escalation, esc.id, with_for_update=True)
            if row is not None and row.status == EscalationStatus.ACTIVE:
                row.status, row.finished_at, row.next_at = (EscalationStatus.EXHAUSTED,
                                                            self.clock.now(), None)
                session.add(row)
                runs = policy.repeat + 1
                text = (f"Nobody acknowledged {inc.ref}: every step of {policy.name} ran "
                        f"{runs} time{'s' if runs > 1 else ''}. Page someone by hand: "
                        f"/page @user {inc.ref}")
                await self.incidents.timeline(session, inc, "paging", text)
                await self.incidents.note(session, inc, f":warning: {text}")
            await job.finish(session)

    async def _ack_timeout(self, job: JobContext) -> None:
        async with job.transaction() as session:
            inc = await session.get(Incident, int(job.payload["incident"]))
            user = str(job.payload["user"])
            severity = self.config.severity(inc.severity) if inc else None
            if inc is not None and inc.status == IncidentStatus.ACKNOWLEDGED and severity \
                    and severity.ack_timeout is not None:
                minutes = int(severity.ack_timeout.total_seconds() // 60)
                await self.pager.send(session, inc, user, kind="repage", now=self.clock.now(),
                                      why=f"acknowledged {minutes}m ago and still not "
                                          "mitigated or resolved")
                await self.incidents.timeline(session, inc, "paging",
                                              f"re-paged <@{user}>: ack timeout")
                await self.scheduler.schedule(
                    session, ACK_TIMEOUT, {"incident": inc.id, "user": user},
                    delay=severity.ack_timeout.total_seconds(), key=f"acktimeout-{inc.id}")
            await job.finish(session)

    async def _external(self, job: JobContext) -> None:
        """The external pager gets its copy off the Slack path; retried with
        the scheduler's backoff when the gateway fails temporarily."""
        async with self.db.transaction() as session:
            what = await deliver_external(session, self.config, int(job.payload["page"]),
                                          self.public_url)
        if what is None:
            return
        url, body, token, fmt = what
        try:
            await pager_webhook.send(url, body, token=token, fmt=fmt)  # type: ignore[arg-type]
        except pager_webhook.PagerError as exc:
            if exc.retry:
                raise
            log.error("external pager refused the page", extra={"url": url, "error": str(exc)})

    async def _bundle(self, job: JobContext) -> None:
        async with job.transaction() as session:
            await self.pager.bundle(session, str(job.payload["user"]), self.clock.now())
            await job.finish(session)

    # -- helpers -----------------------------------------------------------------------

    def _policy_for(self, inc: Incident) -> EscalationPolicy | None:
        service = self.config.service(inc.service) if inc.service else None
        severity = self.config.severity(inc.severity)
        name = (service.escalation_policy if service else None) or (
            severity.policy if severity else None)
        return self.config.oncall.policy(name)

    async def _active(self, session: AsyncSession, incident_id: int) -> Escalation | None:
        return (await session.exec(select(Escalation).where(
            Escalation.incident_id == incident_id,
            Escalation.status == EscalationStatus.ACTIVE).with_for_update())).first()

    async def _mark_acked(self, session: AsyncSession, incident_id: int, at: datetime) -> None:
        for page in (await session.exec(select(Page).where(
                Page.incident_id == incident_id, col(Page.acked_at).is_(None)))).all():
            page.acked_at = at
            session.add(page)

    async def _overrides(self, session: AsyncSession) -> list[OnCallOverride]:
        now = self.clock.now()
        return list((await session.exec(select(OnCallOverride).where(
            col(OnCallOverride.end) > now).order_by(col(OnCallOverride.id)))).all())

    async def _resolve(self, targets: list[Target], at: datetime,
                       overrides: list[OnCallOverride]) -> list[str]:
        found: list[str] = []
        for target in targets:
            if target.user:
                found.append(target.user)
            elif target.channel:
                found.append(target.channel)
            elif target.group and self.groups is not None:
                try:
                    found.extend(await self.groups.members(target.group))
                except Exception:
                    log.warning("could not read a user group to page",
                                extra={"group": target.group}, exc_info=True)
            elif target.schedule:
                schedule = self.config.oncall.schedule(target.schedule)
                if schedule is None:
                    continue
                layer = target.layer or schedule.layers[0].name
                shift = on_call(schedule, layer, at, [
                    Override(o.user, o.start, o.end, o.layer) for o in overrides
                    if o.schedule == schedule.name])
                if shift is not None:
                    found.append(shift.user)
        return list(dict.fromkeys(found))  # once each, in order


def _who(target: str) -> str:
    return f"<@{target}>" if target[:1] in ("U", "W") else f"<#{target}>"

