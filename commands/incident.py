"""/incident: declare, acknowledge, severity, commander, updates, mitigate,
resolve, timeline, list, show; and the incident message's buttons.

Slack sends no thread context with slash commands, so commands take the
incident as `INC-n`; in an incident's own channel it may be left out."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bot.core.audit import Actor
from bot.core.chat import ActionContext, CommandContext, Reply, Section, reply
from bot.core.errors import ChatOpsError
from bot.core.grammar import Parsed
from bot.incidents.render import render_timeline
from bot.incidents.service import IncidentService, parse_ref

if TYPE_CHECKING:
    from bot.app import BotApp

_REF = re.compile(r"^(?:INC-)?\d+$", re.IGNORECASE)
_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$|^([UW][A-Z0-9]+)$")


def mention(text: str) -> str:
    m = _MENTION.match(text.strip())
    if not m:
        raise ChatOpsError(
            f"'{text}' is not a person: mention them (@name) so Slack sends "
            "their id, or give the id (U…)."
        )
    return m.group(1) or m.group(2)


def _actor(ctx: CommandContext | ActionContext) -> Actor:
    return Actor(ctx.user_id, ctx.channel_id, ctx.transport)


def register(bot: BotApp, incidents: IncidentService) -> None:
    r = bot.registry

    async def which(ctx: CommandContext, ref: str | None) -> int:
        if ref:
            return parse_ref(ref)
        found = await incidents.find_for_channel(ctx.channel_id)
        if found is None or found.id is None:
            raise ChatOpsError(
                "Which incident? Add its number, e.g. INC-3 "
                "(slash commands cannot see the thread they are typed in)."
            )
        return found.id

    def split_ref(text: str | None) -> tuple[str | None, str | None]:
        """'INC-3 rest of text' → ('INC-3', 'rest of text')."""
        if not text:
            return None, None
        first, _, rest = text.partition(" ")
        if _REF.match(first) and first.upper().startswith("INC-"):
            return first, rest.strip() or None
        return None, text

    @r.command(
        "/incident declare <title...> [sev=<sev>] [service=<service>]",
        "Open an incident by hand",
        family_summary="Open, run and close incidents",
    )
    async def declare(ctx: CommandContext, a: Parsed) -> Reply:
        inc = await incidents.declare(
            _actor(ctx), a.get("title"), a.get("sev", "SEV3"), a.get("service")
        )
        return reply(
            f"Declared {inc.ref} ({inc.severity}): {inc.title}. You are its commander.", public=True
        )

    @r.command("/incident ack [<ref>]", "Acknowledge: someone is on it")
    async def ack(ctx: CommandContext, a: Parsed) -> Reply:
        inc = await incidents.acknowledge(_actor(ctx), await which(ctx, a.get("ref")))
        return reply(f"Acknowledged {inc.ref}.")

    @r.command("/incident sev <severity> [<ref>]", "Change the severity (SEV1..SEV4)")
    async def sev(ctx: CommandContext, a: Parsed) -> Reply:
        inc = await incidents.set_severity(
            _actor(ctx), await which(ctx, a.get("ref")), a.get("severity")
        )
        return reply(f"{inc.ref} is now {inc.severity}.")

    @r.command("/incident commander <user> [<ref>]", "Name the incident commander")
    async def commander(ctx: CommandContext, a: Parsed) -> Reply:
        inc = await incidents.set_commander(
            _actor(ctx), await which(ctx, a.get("ref")), mention(a.get("user"))
        )
        return reply(f"<@{inc.commander}> commands {inc.ref}.")

    @r.command("/incident update <text...>", "Post a status update (INC-n first if needed)")
    async def update(ctx: CommandContext, a: Parsed) -> Reply:
        ref, text = split_ref(a.get("text"))
        if not text:
            raise ChatOpsError("An update needs some text.")
        inc = await incidents.post_update(_actor(ctx), await which(ctx, ref), text)
        return reply(f"Update posted to {inc.ref}.")

    @r.command("/incident mitigate [<ref>]", "Impact is over; cause not fixed yet")
    async def mitigate(ctx: CommandContext, a: Parsed) -> Reply:
        inc = await incidents.mitigate(_actor(ctx), await which(ctx, a.get("ref")))
        return reply(f"{inc.ref} is mitigated.")

    @r.command("/incident resolve [<text...>]", "Close it, with an optional summary")
    async def resolve(ctx: CommandContext, a: Parsed) -> Reply:
        ref, summary = split_ref(a.get("text"))
        inc = await incidents.resolve(_actor(ctx), await which(ctx, ref), summary)
        return reply(f"{inc.ref} is resolved.")

    @r.command("/incident timeline [<ref>]", "Everything that happened, in order")
    async def timeline(ctx: CommandContext, a: Parsed) -> Reply:
        inc = await incidents.get(await which(ctx, a.get("ref")))
        text = render_timeline(inc, list(await incidents.events_of(inc.id or 0)))
        return reply(text, Section(text=f"```{text}```"))

    @r.command("/incident list [<which:open|all>]", "Open incidents (or all)")
    async def list_(ctx: CommandContext, a: Parsed) -> Reply:
        rows = await incidents.list(open_only=a.get("which", "open") == "open")
        if not rows:
            return reply("No incidents." if a.get("which") == "all" else "No open incidents.")
        lines = [
            f"{i.ref} {i.severity} {i.status}: {i.title}" + (f" ({i.service})" if i.service else "")
            for i in rows
        ]
        return reply("\n".join(lines))

    @r.command("/incident show <ref>", "One incident's details")
    async def show(ctx: CommandContext, a: Parsed) -> Reply:
        inc = await incidents.get(a.get("ref"))
        async with bot.db.transaction() as session:
            message = await incidents.message(session, inc)
        return reply(message.text, *message.blocks)

    @r.action("incident_ack")
    async def press_ack(actx: ActionContext) -> Reply | None:
        inc = await incidents.acknowledge(_actor(actx), parse_ref(actx.value))
        return reply(f"Acknowledged {inc.ref}.")

    @r.action("incident_resolve")
    async def press_resolve(actx: ActionContext) -> Reply | None:
        inc = await incidents.resolve(_actor(actx), parse_ref(actx.value), None)
        return reply(f"{inc.ref} is resolved.")

    @r.action("incident_menu")
    async def press_menu(actx: ActionContext) -> Reply | None:
        number, _, choice = actx.value.partition(":")
        ref = parse_ref(number)
        if choice == "commander":
            inc = await incidents.set_commander(_actor(actx), ref, actx.user_id)
            return reply(f"You command {inc.ref}.")
        if choice.startswith("sev:"):
            inc = await incidents.set_severity(_actor(actx), ref, choice[4:])
            return reply(f"{inc.ref} is now {inc.severity}.")
        raise ChatOpsError("That menu choice is not known.")
