"""Postmortems: drafted from an incident, completed in chat, versioned,
required (with reminders) for the severe ones, and published to Jira."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core import audit
from bot.core.audit import Actor
from bot.core.chat import Message
from bot.core.clock import Clock
from bot.core.config import Config
from bot.core.db import Database
from bot.core.errors import ChatOpsError, NotFound
from bot.core.events import IncidentChanged
from bot.core.models import Job, JobStatus
from bot.core.outbox import Outbox
from bot.core.scheduler import Scheduler
from bot.incidents.models import Incident, IncidentStatus
from bot.incidents.service import IncidentService
from bot.postmortems import render
from bot.postmortems.draft import EDITABLE, TITLES, draft_sections, gather
from bot.postmortems.models import ActionItem, JiraStatus, Postmortem, PostmortemVersion

DRAFT = "postmortem.draft"
PUBLISH = "postmortem.publish"
REMIND = "postmortem.remind"
BOT = "chatops"

EmailLookup = Callable[[str], Awaitable[str | None]]


class PostmortemService:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        config: Config,
        outbox: Outbox,
        scheduler: Scheduler,
        incidents: IncidentService,
    ) -> None:
        self.db, self.clock, self.config, self.outbox = db, clock, config, outbox
        self.scheduler, self.incidents = scheduler, incidents
        self.settings = config.postmortems
        self.emails: EmailLookup | None = None  # Slack's users.info, when Slack is configured
        self.jira_configured = False  # set by the publisher

    # -- reading --------------------------------------------------------------------

    async def _load(
        self, session: AsyncSession, incident_id: int, *, lock: bool = False
    ) -> tuple[Postmortem | None, list[ActionItem]]:
        query = select(Postmortem).where(Postmortem.incident_id == incident_id)
        if lock:
            query = query.with_for_update()
        pm = (await session.exec(query)).first()
        if pm is None:
            return None, []
        items = (
            await session.exec(
                select(ActionItem)
                .where(ActionItem.postmortem_id == pm.id)
                .order_by(col(ActionItem.id))
            )
        ).all()
        return pm, list(items)

    async def _existing(
        self, session: AsyncSession, incident_id: int
    ) -> tuple[Postmortem, list[ActionItem]]:
        """The incident's postmortem, locked for a change; NotFound if it has none."""
        pm, items = await self._load(session, incident_id, lock=True)
        if pm is None:
            raise NotFound(
                f"INC-{incident_id} has no postmortem yet; /postmortem INC-{incident_id} "
                "drafts one."
            )
        return pm, items

    async def get(self, incident_id: int) -> tuple[Postmortem, list[ActionItem]]:
        async with self.db.transaction() as session:
            return await self._existing(session, incident_id)

    async def versions(self, incident_id: int) -> list[PostmortemVersion]:
        pm, _ = await self.get(incident_id)
        async with self.db.transaction() as session:
            rows = await session.exec(
                select(PostmortemVersion)
                .where(PostmortemVersion.postmortem_id == pm.id)
                .order_by(col(PostmortemVersion.version))
            )
            return list(rows.all())

    # -- drafting and editing -----------------------------------------------------------

    async def draft(self, who: Actor, incident_id: int) -> tuple[Postmortem, bool]:
        """The incident's postmortem, drafted now if it has none (True)."""
        inc = await self.incidents.get(incident_id)
        await self.incidents._authorize(who, "postmortem.draft", inc)
        async with self.db.transaction() as session:
            pm, _items = await self._load(session, incident_id, lock=True)
            if pm is not None:
                return pm, False
            pm = await self._create(session, inc, who)
            return pm, True

    async def _create(self, session: AsyncSession, inc: Incident, who: Actor) -> Postmortem:
        now = self.clock.now()
        sections = draft_sections(await gather(session, inc, now), now)
        pm = Postmortem(
            incident_id=inc.id or 0,
            sections=sections,
            created_by=who.user,
            created_at=now,
            updated_at=now,
        )
        session.add(pm)
        await session.flush()
        await self._version(session, pm, [], who.user, "drafted from the incident's record")
        await self.outbox.post(
            session, "", render.message(pm, [], inc.ref), key=pm.key, thread_key=inc.ref
        )
        await self.incidents.timeline(
            session,
            inc,
            "postmortem",
            "postmortem drafted",
            actor=None if who.user == BOT else who.user,
            at=now,
        )
        await audit.by(session, who, at=now, action="postmortem.draft", target=inc.ref)
        return pm

    async def _version(
        self,
        session: AsyncSession,
        pm: Postmortem,
        items: list[ActionItem],
        author: str,
        change: str,
    ) -> None:
        session.add(
            PostmortemVersion(
                postmortem_id=pm.id or 0,
                version=pm.version,
                sections=pm.sections,
                action_items=[i.as_dict() for i in items],
                author=author,
                change=change,
                created_at=self.clock.now(),
            )
        )

    async def _changed(
        self,
        session: AsyncSession,
        pm: Postmortem,
        items: list[ActionItem],
        who: Actor,
        change: str,
        inc: Incident,
    ) -> None:
        """A new version: stored, shown in place in the thread, audited."""
        pm.version += 1
        pm.updated_at = self.clock.now()
        session.add(pm)
        await session.flush()
        await self._version(session, pm, items, who.user, change)
        await self.outbox.update(session, pm.key, render.message(pm, items, inc.ref))
        await audit.by(
            session,
            who,
            at=pm.updated_at,
            action="postmortem.edit",
            target=inc.ref,
            detail={"version": pm.version, "change": change},
        )

    async def edit(self, who: Actor, incident_id: int, changes: dict[str, str]) -> Postmortem:
        unknown = sorted(set(changes) - {*EDITABLE, "title"})
        if unknown:
            names = ", ".join(("title", *EDITABLE))
            raise ChatOpsError(f"There is no section {', '.join(unknown)} (sections: {names}).")
        inc = await self.incidents.get(incident_id)
        await self.incidents._authorize(who, "postmortem.edit", inc)
        async with self.db.transaction() as session:
            pm, items = await self._existing(session, incident_id)
            real = {k: v.strip() for k, v in changes.items() if pm.sections.get(k) != v.strip()}
            if not real:
                return pm
            pm.sections = {**pm.sections, **real}
            what = ", ".join(TITLES.get(k, k).lower() for k in real)
            await self._changed(session, pm, items, who, f"edited {what}", inc)
            return pm

    async def add_action(
        self, who: Actor, incident_id: int, text: str, owner: str | None, due: date | None
    ) -> ActionItem:
        if not text.strip():
            raise ChatOpsError('An action item needs some text: /postmortem action "text" @owner')
        inc = await self.incidents.get(incident_id)
        await self.incidents._authorize(who, "postmortem.action", inc)
        async with self.db.transaction() as session:
            pm, items = await self._existing(session, incident_id)
            item = ActionItem(
                postmortem_id=pm.id or 0,
                text=text.strip(),
                owner=owner,
                due=due,
                added_by=who.user,
                added_at=self.clock.now(),
            )
            session.add(item)
            await session.flush()
            await self._changed(
                session, pm, [*items, item], who, f"added action item {item.text!r}", inc
            )
            return item

    # -- publishing ---------------------------------------------------------------------

    async def publish(self, who: Actor, incident_id: int) -> Postmortem:
        if not self.jira_configured:
            raise ChatOpsError(
                "Jira is not configured, so the postmortem stays in chat: set JIRA_URL, "
                "JIRA_USER and JIRA_TOKEN (and postmortems.jira in the configuration)."
            )
        inc = await self.incidents.get(incident_id)
        await self.incidents._authorize(who, "postmortem.publish", inc)
        async with self.db.transaction() as session:
            pm, items = await self._existing(session, incident_id)
            key = f"postmortem-publish-{pm.id}"
            running = (
                await session.exec(
                    select(Job).where(Job.key == key, Job.status == JobStatus.RUNNING)
                )
            ).first()
            if running is not None:
                # A second publish in parallel could file the issues twice.
                raise ChatOpsError(
                    f"{inc.ref}'s postmortem is being published right now; publish again "
                    "when the thread says it is in, to include later edits."
                )
            pm.jira_status, pm.jira_error = JiraStatus.PENDING, None
            session.add(pm)
            await self.outbox.update(session, pm.key, render.message(pm, items, inc.ref))
            await self.scheduler.schedule(
                session,
                PUBLISH,
                {"id": pm.id, "attempt": 0, "by": who.user},
                key=key,
            )
            await audit.by(
                session,
                who,
                at=self.clock.now(),
                action="postmortem.publish",
                target=inc.ref,
                outcome="requested",
                detail={"version": pm.version},
            )
            return pm

    # -- required postmortems --------------------------------------------------------------

    async def on_incident(self, session: AsyncSession, event: IncidentChanged) -> None:
        """A severe incident resolved: draft its postmortem (in a job of its
        own, so a drafting problem can never stop the incident resolving) and
        start reminding its commander."""
        if event.status != IncidentStatus.RESOLVED or event.change != "status":
            return
        if event.severity not in self.settings.required_for:
            return
        await self.scheduler.schedule(
            session,
            DRAFT,
            {"incident": event.incident_id},
            key=f"postmortem-draft-{event.incident_id}",
            replace=False,
        )
        await self.scheduler.schedule(
            session,
            REMIND,
            {"incident": event.incident_id},
            delay=self.settings.remind_after.total_seconds(),
            key=f"postmortem-remind-{event.incident_id}",
            replace=False,
        )

    async def draft_required(self, incident_id: int) -> None:
        """On resolution: draft the postmortem, or bring an early draft up to
        date (the bot's own parts only; what people wrote stays)."""
        bot = Actor(BOT, None, "incident")
        async with self.db.transaction() as session:
            inc = await session.get(Incident, incident_id)
            pm, items = await self._load(session, incident_id, lock=True)
            if inc is None:
                return
            if pm is None:
                await self._create(session, inc, Actor(BOT, inc.channel, "incident"))
                return
            now = self.clock.now()
            fresh = draft_sections(await gather(session, inc, now), now)
            first = (
                await session.exec(
                    select(PostmortemVersion).where(
                        PostmortemVersion.postmortem_id == pm.id, PostmortemVersion.version == 1
                    )
                )
            ).first()
            drafted = first.sections if first is not None else {}
            update = {k: fresh[k] for k in ("timeline", "metrics")}
            for key in ("impact", "detection"):  # still as the bot wrote them
                if pm.sections.get(key) == drafted.get(key):
                    update[key] = fresh[key]
            changed = {k: v for k, v in update.items() if pm.sections.get(k) != v}
            if changed:
                pm.sections = {**pm.sections, **changed}
                await self._changed(
                    session, pm, items, bot, "brought up to date on resolution", inc
                )

    async def remind(self, incident_id: int) -> bool:
        """Remind the commander; False when no reminder is due any more."""
        async with self.db.transaction() as session:
            inc = await session.get(Incident, incident_id)
            pm, _ = await self._load(session, incident_id)
            if inc is None or pm is None or pm.jira_status == JiraStatus.PUBLISHED:
                return False
            who = inc.commander or inc.acknowledged_by
            if who is None or not who.startswith(("U", "W")):
                who = None
            if self.jira_configured:
                text = (
                    f":memo: The postmortem of {inc.ref} ({inc.title}) is not published yet. "
                    f"Complete it in the incident's thread, then /postmortem publish {inc.ref}."
                )
            else:
                # Without Jira it can never be "published": one reminder, not a nag.
                text = (
                    f":memo: The postmortem of {inc.ref} ({inc.title}) is still a draft. "
                    "Complete it in the incident's thread."
                )
            await self.outbox.post(session, who or inc.channel, Message(text=text))
            if self.jira_configured:
                await self.scheduler.schedule(
                    session,
                    REMIND,
                    {"incident": inc.id},
                    delay=self.settings.remind_every.total_seconds(),
                    key=f"postmortem-remind-{inc.id}",
                )
            return True
