"""/oncall, /oncall schedule, /oncall override(s), /page, /page ack, and the
buttons on a page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlmodel import col, select

from bot.core import audit
from bot.core.audit import Actor
from bot.core.chat import (
    ActionContext,
    Actions,
    Button,
    CommandContext,
    Message,
    Reply,
    Section,
    reply,
)
from bot.core.config import Schedule
from bot.core.errors import ChatOpsError
from bot.core.grammar import Parsed, tokenize
from bot.paging.escalation import Escalator
from bot.paging.models import OnCallOverride, Page
from bot.paging.schedules import Override, next_handoff, on_call, parse_window, shifts
from commands.incident import mention

if TYPE_CHECKING:
    from bot.app import BotApp


def _fmt(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%a %d %b %H:%M %Z")


def register(bot: BotApp, escalator: Escalator) -> None:
    r, config, incidents = bot.registry, bot.config, bot.incidents

    def schedule_named(name: str | None) -> Schedule:
        schedules = config.oncall.schedules
        if not schedules:
            raise ChatOpsError("No on-call schedules are configured (oncall.schedules).")
        if name is None:
            return schedules[0]
        found = config.oncall.schedule(name)
        if found is None:
            raise ChatOpsError(
                f"There is no schedule '{name}' (known: {', '.join(s.name for s in schedules)})."
            )
        return found

    async def overrides(schedule: str) -> list[Override]:
        async with bot.db.transaction() as s:
            rows = (
                await s.exec(
                    select(OnCallOverride)
                    .where(
                        OnCallOverride.schedule == schedule,
                        col(OnCallOverride.end) > bot.clock.now(),
                    )
                    .order_by(col(OnCallOverride.id))
                )
            ).all()
        return [Override(o.user, o.start, o.end, o.layer) for o in rows]

    async def viewer_zone(user: str) -> ZoneInfo | None:
        """The asker's own time zone, from Slack, to show hand-offs in it too."""
        if bot.slack_poster is None:
            return None
        try:
            name = await bot.slack_poster.user_timezone(user)
            return ZoneInfo(name) if name else None
        except Exception:
            return None  # showing the schedule's zone alone is fine

    @r.command(
        "/oncall [<schedule>]",
        "Who is on call now, and the next hand-off",
        family_summary="On-call schedules and overrides",
    )
    async def now(ctx: CommandContext, a: Parsed) -> Reply:
        sched = schedule_named(a.get("schedule"))
        tz, at = ZoneInfo(sched.timezone), bot.clock.now()
        active = await overrides(sched.name)
        mine = await viewer_zone(ctx.user_id)
        lines = [f"*{sched.name}* ({sched.timezone})"]
        for layer in sched.layers:
            shift = on_call(sched, layer.name, at, active)
            nxt = next_handoff(sched, layer.name, at, active)
            who = (
                f"<@{shift.user}>" + (" (override)" if shift.override else "")
                if shift
                else "nobody"
            )
            line = f"{layer.name}: {who}"
            if nxt is not None:
                yours = (
                    f"{_fmt(nxt.start, mine)} your time"
                    if mine is not None and mine != tz
                    else f"{nxt.start.astimezone(UTC):%H:%M} UTC"
                )
                line += f"; next <@{nxt.user}> at {_fmt(nxt.start, tz)} ({yours})"
            lines.append(line)
        return reply("\n".join(lines))

    @r.command("/oncall schedule <schedule> [days=<days:int>]", "The next shifts of a schedule")
    async def upcoming(ctx: CommandContext, a: Parsed) -> Reply:
        sched = schedule_named(a.get("schedule"))
        days = int(a.get("days", 7))
        if not 1 <= days <= 60:
            raise ChatOpsError("days must be between 1 and 60.")
        tz, start = ZoneInfo(sched.timezone), bot.clock.now()
        active = await overrides(sched.name)
        lines = [f"*{sched.name}*, next {days} days ({sched.timezone})"]
        for layer in sched.layers:
            lines.append(f"_{layer.name}_")
            for s in shifts(sched, layer.name, start, start + timedelta(days=days), active):
                mark = " (override)" if s.override else ""
                lines.append(f"  {_fmt(s.start, tz)} → {_fmt(s.end, tz)}  <@{s.user}>{mark}")
        return reply("\n".join(lines))

    @r.command(
        "/oncall override <schedule> <user> <when...>",
        "Cover a shift: <from> <until>, 'for 4h' or 'until tomorrow 09:00'",
    )
    async def override(ctx: CommandContext, a: Parsed) -> Reply:
        sched = schedule_named(a.get("schedule"))
        user = mention(a.get("user"))
        try:
            start, end = parse_window(
                tokenize(a.get("when")), ZoneInfo(sched.timezone), bot.clock.now()
            )
        except ValueError as exc:
            raise ChatOpsError(str(exc)) from None
        async with bot.db.transaction() as s:
            row = OnCallOverride(
                schedule=sched.name,
                user=user,
                start=start,
                end=end,
                created_by=ctx.user_id,
                created_at=bot.clock.now(),
            )
            s.add(row)
            await s.flush()
            await audit.by(
                s,
                Actor(ctx.user_id, ctx.channel_id, ctx.transport),
                at=bot.clock.now(),
                action="oncall.override",
                target=sched.name,
                detail={
                    "user": user,
                    "start": start.isoformat(),
                    "end": end.isoformat(),
                    "id": row.id,
                },
            )
        tz = ZoneInfo(sched.timezone)
        return reply(
            f"Override #{row.id}: <@{user}> covers {sched.name} from "
            f"{_fmt(start, tz)} until {_fmt(end, tz)}.",
            public=True,
        )

    @r.command("/oncall overrides [<schedule>]", "Overrides now and to come")
    async def list_overrides(ctx: CommandContext, a: Parsed) -> Reply:
        async with bot.db.transaction() as s:
            query = select(OnCallOverride).where(col(OnCallOverride.end) > bot.clock.now())
            if a.get("schedule"):
                query = query.where(OnCallOverride.schedule == a.get("schedule"))
            rows = (await s.exec(query.order_by(col(OnCallOverride.start)))).all()
        if not rows:
            return reply("No overrides.")
        return reply(
            "\n".join(
                f"#{o.id} {o.schedule}: <@{o.user}> {o.start:%Y-%m-%d %H:%M}Z → "
                f"{o.end:%Y-%m-%d %H:%M}Z (by <@{o.created_by}>)"
                for o in rows
            )
        )

    @r.command("/oncall override remove <id:int>", "Remove an override")
    async def remove_override(ctx: CommandContext, a: Parsed) -> Reply:
        async with bot.db.transaction() as s:
            row = await s.get(OnCallOverride, a.get("id"))
            if row is None:
                raise ChatOpsError(f"There is no override #{a.get('id')}.")
            await s.delete(row)
            await audit.by(
                s,
                Actor(ctx.user_id, ctx.channel_id, ctx.transport),
                at=bot.clock.now(),
                action="oncall.override.remove",
                target=row.schedule,
                detail={"id": row.id, "user": row.user},
            )
        return reply(f"Removed override #{row.id}.")

    @r.command(
        "/page <who> <message...>",
        "Page a person or a schedule's on-call by hand",
        family_summary="Page people by hand; acknowledge pages",
    )
    async def page(ctx: CommandContext, a: Parsed) -> Reply:
        who, text = a.get("who"), a.get("message")
        if config.oncall.schedule(who) is not None:
            sched = schedule_named(who)
            shift = on_call(
                sched, sched.layers[0].name, bot.clock.now(), await overrides(sched.name)
            )
            if shift is None:
                raise ChatOpsError(f"Nobody is on call for {who} right now.")
            user = shift.user
        else:
            user = mention(who)
        async with bot.db.transaction() as s:
            row = Page(
                user=user,
                kind="manual",
                message=text,
                requested_by=ctx.user_id,
                sent_at=bot.clock.now(),
            )
            s.add(row)
            await s.flush()
            await bot.outbox.post(s, user, _manual_page(row, ctx.user_id, text))
            await audit.by(
                s,
                Actor(ctx.user_id, ctx.channel_id, ctx.transport),
                at=bot.clock.now(),
                action="page",
                target=user,
                detail={"page": row.id, "message": text[:300]},
            )
        return reply(f"Paged <@{user}> (page #{row.id}).")

    @r.command("/page ack", "Acknowledge your latest page")
    async def page_ack(ctx: CommandContext, a: Parsed) -> Reply:
        async with bot.db.transaction() as s:
            latest = (
                await s.exec(
                    select(Page)
                    .where(
                        Page.user == ctx.user_id,
                        col(Page.acked_at).is_(None),
                        col(Page.suppressed).is_(False),
                    )
                    .order_by(col(Page.id).desc())
                )
            ).first()
        if latest is None:
            raise ChatOpsError("You have no page to acknowledge.")
        return await _ack(latest.id or 0, ctx.user_id, ctx.channel_id, ctx.transport)

    async def _ack(page_id: int, user: str, channel: str, transport: str) -> Reply:
        async with bot.db.transaction() as s:
            row = await s.get(Page, page_id)
        if row is None:
            raise ChatOpsError("That page is gone.")
        if row.incident_id:
            inc = await incidents.acknowledge(Actor(user, channel, transport), row.incident_id)
            return reply(f"Acknowledged {inc.ref}.")
        async with bot.db.transaction() as s:
            row = await s.get(Page, page_id)
            assert row is not None
            row.acked_at = bot.clock.now()
            s.add(row)
            if row.requested_by:
                await bot.outbox.post(s, row.requested_by, _ack_note(user, row))
        return reply(f"Acknowledged page #{page_id}.")

    @r.action("page_ack")
    async def press_ack(actx: ActionContext) -> Reply | None:
        if actx.value.startswith("m"):
            return await _ack(int(actx.value[1:]), actx.user_id, actx.channel_id, actx.transport)
        inc = await incidents.acknowledge(
            Actor(actx.user_id, actx.channel_id, actx.transport), int(actx.value)
        )
        return reply(f"Acknowledged {inc.ref}.")

    @r.action("page_resolve")
    async def press_resolve(actx: ActionContext) -> Reply | None:
        inc = await incidents.resolve(
            Actor(actx.user_id, actx.channel_id, actx.transport), int(actx.value), None
        )
        return reply(f"{inc.ref} is resolved.")

    @r.action("page_escalate")
    async def press_escalate(actx: ActionContext) -> Reply | None:
        async with bot.db.transaction() as s:
            moved = await escalator.escalate_now(s, int(actx.value))
        return reply(
            "Escalating to the next step now."
            if moved
            else "That incident is not being escalated any more."
        )


def _manual_page(page: Page, by: str, text: str) -> Message:
    return Message(
        text=f"Page from <@{by}>: {text}",
        blocks=[
            Section(text=f":pager: *Page from <@{by}>*\n{text}"),
            Actions(
                buttons=[
                    Button(
                        label="Acknowledge",
                        action_id="page_ack",
                        value=f"m{page.id}",
                        style="primary",
                    )
                ]
            ),
        ],
    )


def _ack_note(user: str, page: Page) -> Message:
    return Message(text=f"<@{user}> acknowledged your page #{page.id}: {page.message}")
