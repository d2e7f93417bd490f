"""The outbox's Slack transport: renders messages and sends them with the
Web API (integrations/slack.py), mapping Slack's failures onto the outbox's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.core.delivery import Delivery, PermanentError, RateLimited, TransientError
from bot.core.models import OutboxKind
from bot.slack.render import render_blocks, render_text_fallback
from integrations.slack import SlackCallError, SlackPoster


class SlackDeliverer:
    def __init__(self, poster: SlackPoster) -> None:
        self.poster = poster

    async def deliver(self, d: Delivery) -> str | None:
        text, blocks = render_text_fallback(d.message), render_blocks(d.message)
        try:
            if d.kind == OutboxKind.POST:
                _channel, ts = await self.poster.post_message(
                    d.channel, text, blocks, thread_ts=d.thread_ts,
                    reply_broadcast=d.reply_broadcast, outbox_id=d.outbox_id)
                return ts
            if d.kind == OutboxKind.UPDATE:
                assert d.ts is not None
                await self.poster.update_message(d.channel, d.ts, text, blocks)
                return d.ts
            if d.kind == OutboxKind.EPHEMERAL:
                assert d.user is not None
                await self.poster.post_ephemeral(d.channel, d.user, text, blocks, d.thread_ts)
                return None
            if d.kind == OutboxKind.RESPOND:
                assert d.response_url is not None
                body: dict[str, Any] = {
                    "text": text, "blocks": blocks,
                    "response_type": "ephemeral" if d.ephemeral else "in_channel",
                    "replace_original": d.replace_original,
                }
                await self.poster.respond(d.response_url, body)
                return None
        except SlackCallError as exc:
            if exc.kind == "rate_limited":
                raise RateLimited(exc.retry_after, exc.error) from None
            if exc.kind == "transient":
                raise TransientError(exc.error) from None
            raise PermanentError(exc.error) from None
        raise PermanentError(f"unknown outbox kind {d.kind}")

    async def find_delivered(self, d: Delivery, since: datetime) -> str | None:
        try:
            return await self.poster.find_outbox_message(
                d.channel, d.outbox_id, since.timestamp() - 5)
        except SlackCallError as exc:
            if exc.kind == "permanent":  # e.g. missing channels:history scope
                raise NotImplementedError(exc.error) from None
            raise TransientError(exc.error) from None
