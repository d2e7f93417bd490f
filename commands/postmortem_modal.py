"""The Edit button on a postmortem: a form in Slack, directions elsewhere;
and what the form's submission does."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.core.audit import Actor
from bot.core.chat import ActionContext, Reply, reply
from bot.core.errors import ChatOpsError
from bot.incidents.service import parse_ref
from bot.postmortems.modal import SECTIONS, SUBMITTED, edit_view
from bot.postmortems.service import PostmortemService
from integrations.slack import SlackCallError

if TYPE_CHECKING:
    from bot.app import BotApp

log = logging.getLogger("chatops.postmortem")


def how_to_edit(ref: str) -> str:
    return (
        f"Edit {ref}'s postmortem one section at a time: "
        f"/postmortem edit {ref} <section> <text>\n"
        f"Sections: {', '.join(SECTIONS)}."
    )


def register(bot: BotApp, postmortems: PostmortemService) -> None:
    r = bot.registry

    @r.action("postmortem_edit")
    async def edit_button(actx: ActionContext) -> Reply | None:
        incident_id = parse_ref(actx.value)
        ref = f"INC-{incident_id}"
        pm, _items = await postmortems.get(incident_id)
        poster = bot.slack_poster
        if actx.transport == "slack" and actx.trigger_id and poster is not None:
            try:
                await poster.open_view(actx.trigger_id, edit_view(pm, ref))
                return None
            except SlackCallError as exc:
                # A trigger lives three seconds: a slow moment must not leave
                # the person without a way to edit.
                log.warning("could not open the postmortem form: %s", exc)
                return reply(f"I could not open the form ({exc.error}).\n" + how_to_edit(ref))
        return reply(how_to_edit(ref))

    @r.action(SUBMITTED)
    async def submitted(actx: ActionContext) -> Reply | None:
        if not actx.value.isdigit():
            raise ChatOpsError("That form lost track of its incident; press Edit again.")
        if not actx.extra:
            return None  # saved without changes
        await postmortems.edit(
            Actor(actx.user_id, None, actx.transport), int(actx.value), dict(actx.extra)
        )
        return None  # the thread's message shows the new version
