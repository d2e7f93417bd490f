"""Sending one page: a DM with Acknowledge / Resolve / Escalate buttons,
through the durable outbox, within the person's rate limit (the excess is
bundled into one page when their window ends), and to their external pager
if they have one."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.chat import Actions, Button, Context, Message, Section
from bot.core.config import Config
from bot.core.outbox import Outbox, is_dm
from bot.core.scheduler import Scheduler
from bot.incidents.models import Incident
from bot.paging.models import Page

BUNDLE = "page.bundle"
EXTERNAL = "page.external"


def page_message(inc: Incident, *, why: str) -> Message:
    value = str(inc.id)
    head = f":rotating_light: *{inc.ref} {inc.severity}: {inc.title}*"
    fields = [("Service", inc.service or "—"), ("Status", inc.status)]
    blocks: list[Section | Context | Actions] = [
        Section(text=head, fields=fields),
        Context(text=why),
        Actions(
            buttons=[
                Button(label="Acknowledge", action_id="page_ack", value=value, style="primary"),
                Button(label="Resolve", action_id="page_resolve", value=value, style="danger"),
                Button(label="Escalate now", action_id="page_escalate", value=value),
                *[
                    Button(label=name.title(), action_id=f"page_link_{name}", url=url)
                    for name, url in inc.links.items()
                ],
            ]
        ),
    ]
    return Message(text=f"Page: {inc.ref} {inc.severity} {inc.title} ({why})", blocks=blocks)


class Pager:
    def __init__(self, config: Config, outbox: Outbox, scheduler: Scheduler) -> None:
        self.config, self.outbox, self.scheduler = config, outbox, scheduler

    async def send(
        self,
        session: AsyncSession,
        inc: Incident,
        target: str,
        *,
        kind: str,
        why: str,
        now: datetime,
        escalation_id: int | None = None,
        step: int | None = None,
        round_: int | None = None,
    ) -> bool:
        """Page `target` (a user id, or a channel); False if it was bundled."""
        page = Page(
            incident_id=inc.id,
            escalation_id=escalation_id,
            user=target,
            kind=kind,
            step=step,
            round=round_,
            sent_at=now,
            message=why,
        )
        if is_dm(target) and await self._over_limit(session, target, now):
            page.suppressed = True
            session.add(page)
            window = self.config.oncall.rate_limit.window
            first = (
                await session.exec(
                    select(func.min(Page.sent_at)).where(
                        Page.user == target,
                        col(Page.suppressed).is_(False),
                        col(Page.sent_at) >= now - window,
                    )
                )
            ).one()
            await self.scheduler.schedule(
                session,
                BUNDLE,
                {"user": target},
                due_at=(first or now) + window,
                key=f"bundle-{target}",
                replace=False,
            )
            return False
        session.add(page)
        await session.flush()
        message = page_message(inc, why=why)
        if not is_dm(target):
            message = Message(text=f"<!here> {message.text}", blocks=message.blocks)
        await self.outbox.post(session, target, message)
        if any(p.user == target for p in self.config.oncall.pagers):
            await self.scheduler.schedule(
                session, EXTERNAL, {"page": page.id}, key=f"external-{page.id}"
            )
        return True

    async def _over_limit(self, session: AsyncSession, user: str, now: datetime) -> bool:
        limit = self.config.oncall.rate_limit
        if session.sync_session.get_bind().dialect.name == "postgresql":
            # Count-then-send must not interleave for one person: two escalations
            # paging them at once would both see room for one more page. (SQLite
            # serialises writers already.)
            await session.exec(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),  # type: ignore[call-overload]
                params={"key": f"page-limit:{user}"},
            )
        sent = (
            await session.exec(
                select(func.count())
                .select_from(Page)
                .where(
                    Page.user == user,
                    col(Page.suppressed).is_(False),
                    col(Page.sent_at) >= now - limit.window,
                )
            )
        ).one()
        return int(sent) >= limit.pages

    async def bundle(self, session: AsyncSession, user: str, now: datetime) -> int:
        """One page for everything held back by the rate limit."""
        held = list(
            (
                await session.exec(
                    select(Page)
                    .where(
                        Page.user == user,
                        col(Page.suppressed).is_(True),
                        col(Page.bundled_at).is_(None),
                    )
                    .order_by(col(Page.id))
                )
            ).all()
        )
        if not held:
            return 0
        incidents = []
        for page in held:
            page.bundled_at = now
            session.add(page)
            inc = await session.get(Incident, page.incident_id) if page.incident_id else None
            if inc is not None and inc.open and inc not in incidents:
                incidents.append(inc)
        if incidents:
            lines = [f"• {i.ref} {i.severity} {i.status}: {i.title}" for i in incidents]
            session.add(
                Page(
                    user=user,
                    kind="bundle",
                    sent_at=now,
                    message=f"{len(incidents)} more incidents",
                )
            )
            await self.outbox.post(
                session,
                user,
                Message(
                    text=f":rotating_light: {len(incidents)} more incidents paged you while you "
                    "were at your page limit:\n"
                    + "\n".join(lines)
                    + "\n`/incident ack INC-n` to acknowledge each."
                ),
            )
        return len(incidents)


async def deliver_external(
    session: AsyncSession, config: Config, page_id: int, public_url: str | None
) -> tuple[str, dict[str, object], str | None, str] | None:
    """What to send to the external pager for a page: (url, body, token, format)."""
    from integrations.pager_webhook import body_for

    page = await session.get(Page, page_id)
    if page is None:
        return None
    pager = next((p for p in config.oncall.pagers if p.user == page.user), None)
    inc = await session.get(Incident, page.incident_id) if page.incident_id else None
    if pager is None or inc is None:
        return None
    ack_url = f"{public_url.rstrip('/')}/api/v1/incidents/{inc.ref}" if public_url else None
    body = body_for(
        pager.format,
        incident=inc.ref,
        severity=inc.severity,
        summary=f"{inc.ref} {inc.severity}: {inc.title}",
        ack_url=ack_url,
        token=pager.token,
    )
    return pager.url, body, pager.token, pager.format
