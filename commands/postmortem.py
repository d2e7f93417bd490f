"""/postmortem: draft, edit, action items, publish to Jira, versions; and
the buttons on a postmortem's message."""

from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING

from bot.core.audit import Actor
from bot.core.chat import ActionContext, CommandContext, Reply, reply
from bot.core.errors import ChatOpsError
from bot.core.grammar import Parsed, UsageError, tokenize
from bot.incidents.service import parse_ref
from bot.postmortems.draft import EDITABLE
from bot.postmortems.service import PostmortemService
from commands.incident import mention

if TYPE_CHECKING:
    from bot.app import BotApp

_REF = re.compile(r"^INC-\d+$", re.IGNORECASE)
_ID = re.compile(r"^@[UW][A-Z0-9]+$")
EDIT_USAGE = f"/postmortem edit [INC-n] <section> <text>  (sections: title, {', '.join(EDITABLE)})"
ACTION_USAGE = '/postmortem action [INC-n] "<text>" [@owner] [due=YYYY-MM-DD]'


def _actor(ctx: CommandContext | ActionContext) -> Actor:
    return Actor(ctx.user_id, ctx.channel_id, ctx.transport)


def parse_action(words: list[str]) -> tuple[str | None, str, str | None, date | None]:
    """`INC-3 "Alert on queue depth" @bob due=2026-12-01` → ref, text, owner, due."""
    ref: str | None = None
    owner: str | None = None
    due: date | None = None
    text: list[str] = []
    for i, word in enumerate(words):
        if i == 0 and _REF.match(word):
            ref = word
        elif word.startswith("due="):
            try:
                due = date.fromisoformat(word[4:])
            except ValueError:
                raise UsageError(
                    f"due must be a date like 2026-12-01, not '{word[4:]}'", ACTION_USAGE
                ) from None
        elif word.startswith(("<@", "@")) and owner is None and text:
            # "<@U123|bob>" from Slack; "@U123" typed in the terminal.
            owner = mention(word[1:] if _ID.match(word) else word)
        else:
            text.append(word)
    if not text:
        raise UsageError("An action item needs some text.", ACTION_USAGE)
    return ref, " ".join(text), owner, due


def register(bot: BotApp, postmortems: PostmortemService) -> None:
    r = bot.registry

    async def which(ctx: CommandContext, ref: str | None) -> int:
        if ref:
            return parse_ref(ref)
        found = await bot.incidents.find_for_channel(ctx.channel_id)
        if found is None or found.id is None:
            raise ChatOpsError(
                "Which incident? Add its number, e.g. /postmortem INC-3 "
                "(slash commands cannot see the thread they are typed in)."
            )
        return found.id

    @r.command(
        "/postmortem [<ref>]",
        "Draft an incident's postmortem (or show where it is)",
        family_summary="Draft postmortems in chat and log them to Jira",
    )
    async def draft(ctx: CommandContext, a: Parsed) -> Reply:
        incident_id = await which(ctx, a.get("ref"))
        pm, created = await postmortems.draft(_actor(ctx), incident_id)
        if created:
            return reply(
                f"Drafted the postmortem of INC-{incident_id} in its thread. Complete it "
                "with the Edit button or /postmortem edit, add action items with "
                "/postmortem action, then /postmortem publish."
            )
        return reply(
            f"INC-{incident_id}'s postmortem is at version {pm.version} in the "
            f"incident's thread ({pm.jira_status}"
            + (f", {pm.jira_key}" if pm.jira_key else "")
            + ")."
        )

    @r.command("/postmortem edit <args...>", "Replace a section's text (a new version)")
    async def edit(ctx: CommandContext, a: Parsed) -> Reply:
        words = str(a.get("args")).split(None, 2)
        ref = words.pop(0) if words and _REF.match(words[0]) else None
        rest = " ".join(words).split(None, 1)
        if len(rest) < 2:
            raise UsageError("Give a section and its new text.", EDIT_USAGE)
        section, text = rest[0].lower(), rest[1]
        pm = await postmortems.edit(_actor(ctx), await which(ctx, ref), {section: text})
        return reply(f"Updated {section}; the postmortem is at version {pm.version}.")

    @r.command("/postmortem action <args...>", "Add an action item, with an owner and due date")
    async def action(ctx: CommandContext, a: Parsed) -> Reply:
        ref, text, owner, due = parse_action(tokenize(str(a.get("args"))))
        item = await postmortems.add_action(_actor(ctx), await which(ctx, ref), text, owner, due)
        who = f" for <@{item.owner}>" if item.owner else ""
        return reply(
            f"Added action item “{item.text}”{who}"
            + (f", due {item.due.isoformat()}" if item.due else "")
            + "."
        )

    @r.command("/postmortem publish [<ref>]", "Log it to Jira (again after edits: updates it)")
    async def publish(ctx: CommandContext, a: Parsed) -> Reply:
        pm = await postmortems.publish(_actor(ctx), await which(ctx, a.get("ref")))
        return reply(f"Publishing version {pm.version} to Jira; the thread will say when it is in.")

    @r.command("/postmortem versions [<ref>]", "Who changed what, version by version")
    async def versions(ctx: CommandContext, a: Parsed) -> Reply:
        rows = await postmortems.versions(await which(ctx, a.get("ref")))
        return reply(
            "\n".join(
                f"v{v.version} {v.created_at:%Y-%m-%d %H:%M} <@{v.author}>: {v.change}"
                for v in rows
            )
        )

    @r.action("postmortem_publish")
    async def publish_button(actx: ActionContext) -> Reply | None:
        pm = await postmortems.publish(_actor(actx), int(actx.value))
        return reply(f"Publishing version {pm.version} to Jira.")
