"""Slack transport: a Bolt AsyncApp whose listeners ack at once and then
hand the request to the dispatcher; replies leave through the outbox.

HTTP mode is embedded in the bot's own aiohttp app at POST /slack/events
(signatures verified by Bolt; failures get 401 before any listener runs).
Socket Mode is used when SLACK_APP_TOKEN is set.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.app import BotApp
from bot.core.chat import ActionContext, CommandContext
from bot.postmortems import modal
from bot.web import Handler

log = logging.getLogger("chatops.slack")


def build_bolt_app(bot: BotApp) -> AsyncApp:
    s = bot.settings
    token = s.slack_bot_token.get_secret_value() if s.slack_bot_token else None
    secret = s.slack_signing_secret.get_secret_value() if s.slack_signing_secret else ""
    app = AsyncApp(
        client=AsyncWebClient(token=token, base_url=s.slack_api_url),
        signing_secret=secret,
        # Ack first, work after: the listener keeps running once ack() is sent.
        # (The async app checks the token with auth.test on the first request,
        # not at start-up, so a Slack outage does not stop the bot starting.)
        process_before_response=False,
    )

    @app.command(re.compile(r"^/"))
    async def on_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack()
        ctx = CommandContext(
            command=str(command.get("command", "")).lower(),
            text=str(command.get("text", "")),
            user_id=str(command.get("user_id", "")),
            user_name=command.get("user_name"),
            channel_id=str(command.get("channel_id", "")),
            team_id=command.get("team_id"),
            transport="slack",
            response_url=command.get("response_url"),
            trigger_id=command.get("trigger_id"),
        )
        reply = await bot.dispatcher.dispatch(ctx)
        await bot.send_reply(ctx, reply)

    @app.action(re.compile(".*"))
    async def on_action(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        container = body.get("container") or {}
        message = body.get("message") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id", "")
        for action in body.get("actions", []):
            actx = ActionContext(
                action_id=str(action.get("action_id", "")),
                value=str(action.get("value") or (action.get("selected_option") or {})
                          .get("value", "")),
                user_id=str((body.get("user") or {}).get("id", "")),
                channel_id=str(channel),
                transport="slack",
                message_ts=container.get("message_ts") or message.get("ts"),
                thread_ts=message.get("thread_ts"),
                response_url=body.get("response_url"),
                trigger_id=body.get("trigger_id"),
            )
            reply = await bot.dispatcher.press(actx)
            if reply is not None:
                ctx = CommandContext(command=actx.action_id, text=actx.value,
                                     user_id=actx.user_id, channel_id=actx.channel_id,
                                     transport="slack", response_url=actx.response_url,
                                     thread_ts=actx.thread_ts)
                await bot.send_reply(ctx, reply)

    @app.view(modal.CALLBACK_ID)
    async def on_postmortem_edit(ack: AsyncAck, body: dict[str, Any],
                                 view: dict[str, Any]) -> None:
        problems = modal.problems(view)
        if problems:  # shown under the fields; the form stays open
            await ack(response_action="errors", errors=problems)
            return
        await ack()
        user = str((body.get("user") or {}).get("id", ""))
        # Through the dispatcher like a button, so refusals are audited and
        # errors become a message (to the person's DM: a form has no channel).
        actx = ActionContext(action_id=modal.SUBMITTED, value=str(view.get("private_metadata", "")),
                             user_id=user, channel_id=user, transport="slack",
                             extra=modal.edited_sections(view))
        reply = await bot.dispatcher.press(actx)
        if reply is not None:
            dm = CommandContext(command=modal.CALLBACK_ID, text="", user_id=user,
                                channel_id=user, transport="slack")
            await bot.send_reply(dm, reply.model_copy(update={"ephemeral": False}))

    @app.event("reaction_added")
    async def on_reaction(event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("reaction") != "pushpin" or (event.get("item") or {}).get("type") != "message":
            return
        await pin_to_timeline(bot, event, str(body.get("event_id", "")))

    return app


async def pin_to_timeline(bot: BotApp, event: dict[str, Any], event_id: str) -> None:
    """A :pushpin: on a message in an incident's thread adds it to the timeline."""
    from sqlalchemy.exc import IntegrityError
    from sqlmodel import select

    from bot.core.models import InboundReceipt, OutboxMessage
    from bot.incidents.models import Incident

    item = event["item"]
    channel, ts = str(item.get("channel", "")), str(item.get("ts", ""))
    if bot.slack_poster is None:
        return
    message = await bot.slack_poster.message(channel, ts)
    if message is None:
        return
    parent_ts = str(message.get("thread_ts") or ts)
    async with bot.db.transaction() as session:
        # Slack retries events it thinks were not received; handle each once.
        try:
            async with session.begin_nested():
                session.add(InboundReceipt(key=f"event:{event_id}", received_at=bot.clock.now()))
        except IntegrityError:
            return
        home = (await session.exec(select(OutboxMessage).where(
            OutboxMessage.channel == channel, OutboxMessage.ts == parent_ts,
            OutboxMessage.kind == "post"))).first()
        if home is None or not (home.key or "").startswith("INC-"):
            return
        inc = await session.get(Incident, int((home.key or "INC-0")[4:]))
        if inc is None:
            return
        await bot.incidents.pin(session, inc, user=str(event.get("user", "")),
                                text=str(message.get("text", "")), ts=ts)


def http_handler(bolt: AsyncApp) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        bolt_request = await to_bolt_request(request)
        return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

    return handle


async def start_socket_mode(bot: BotApp, bolt: AsyncApp) -> None:
    """Connect over Socket Mode (no public URL needed); closed on bot stop."""
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    assert bot.settings.slack_app_token is not None
    handler = AsyncSocketModeHandler(bolt, bot.settings.slack_app_token.get_secret_value())
    await handler.connect_async()  # type: ignore[no-untyped-call]
    bot.on_stop(handler.close_async)
    log.info("connected to Slack over Socket Mode")
