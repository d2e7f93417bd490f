"""The durable outbox: everything the bot says is written to the database in
the same transaction as the change it reports, then delivered by the sender
(outbox_sender.py). Messages have logical keys ("INC-3", "deploy-42") so
edits and thread replies can be queued before Slack has assigned a ts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.chat import Message
from bot.core.clock import Clock
from bot.core.errors import ChatOpsError
from bot.core.models import OutboxKind, OutboxMessage, OutboxStatus


def is_dm(channel: str) -> bool:
    """Slack user ids as channels mean "the bot's DM with that person"."""
    return channel[:1] in ("U", "W") and channel[1:].isalnum() and channel.isupper()


class Outbox:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._listeners: list[Any] = []

    def on_commit(self, callback: Any) -> None:
        """Called after a transaction that queued messages commits (wakes the sender)."""
        self._listeners.append(callback)

    async def post(
        self,
        session: AsyncSession,
        channel: str,
        message: Message,
        *,
        key: str | None = None,
        thread_key: str | None = None,
        thread_ts: str | None = None,
        broadcast: bool = False,
    ) -> None:
        """Post to a channel (or a DM when `channel` is a user id). With
        `thread_key`, reply in the thread of the message posted under that key."""
        if thread_key is not None:
            parent = await self._post_row(session, thread_key)
            if parent is None:
                raise ChatOpsError(f"no message '{thread_key}' to reply to")
            channel = parent.channel
        payload: dict[str, Any] = {"message": message.model_dump(mode="json")}
        if broadcast:
            payload["reply_broadcast"] = True
        self._add(session, OutboxMessage(
            lane=channel, channel=channel, kind=OutboxKind.POST, key=key,
            thread_key=thread_key, thread_ts=thread_ts, payload=payload))

    async def update(self, session: AsyncSession, key: str, message: Message) -> None:
        """Replace the content of the message posted under `key`. If it (or an
        earlier edit) has not been sent yet, only the latest content is sent."""
        post = await self._post_row(session, key, lock=True)
        if post is None:
            raise ChatOpsError(f"no message '{key}' to update")
        content = message.model_dump(mode="json")
        if post.status == OutboxStatus.PENDING:
            post.payload = {**post.payload, "message": content}
            session.add(post)
            self._wake_on_commit(session)
            return
        queued = (await session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.key == key, OutboxMessage.kind == OutboxKind.UPDATE,
                   OutboxMessage.status == OutboxStatus.PENDING)
            .with_for_update())).first()
        if queued is not None:
            queued.payload = {"message": content}
            session.add(queued)
            self._wake_on_commit(session)
            return
        self._add(session, OutboxMessage(
            lane=post.lane, channel=post.channel, kind=OutboxKind.UPDATE, key=key,
            payload={"message": content}))

    async def ephemeral(
        self, session: AsyncSession, channel: str, user: str, message: Message,
        *, thread_ts: str | None = None,
    ) -> None:
        self._add(session, OutboxMessage(
            lane=f"ephemeral:{channel}:{user}", channel=channel, kind=OutboxKind.EPHEMERAL,
            thread_ts=thread_ts, payload={"message": message.model_dump(mode="json"),
                                          "user": user}))

    async def respond(
        self, session: AsyncSession, response_url: str, message: Message, *,
        channel: str, user: str, ephemeral: bool = True, replace_original: bool = False,
    ) -> None:
        """Answer a slash command or button press through its response_url."""
        self._add(session, OutboxMessage(
            lane=f"respond:{channel}:{user}", channel=channel, kind=OutboxKind.RESPOND,
            payload={"message": message.model_dump(mode="json"), "user": user,
                     "response_url": response_url, "ephemeral": ephemeral,
                     "replace_original": replace_original}))

    async def has_message(self, session: AsyncSession, key: str) -> bool:
        return await self._post_row(session, key) is not None

    async def _post_row(
        self, session: AsyncSession, key: str, *, lock: bool = False
    ) -> OutboxMessage | None:
        query = (select(OutboxMessage)
                 .where(OutboxMessage.key == key, OutboxMessage.kind == OutboxKind.POST)
                 .order_by(col(OutboxMessage.id).desc()).limit(1))
        if lock:
            query = query.with_for_update()
        return (await session.exec(query)).first()

    def _add(self, session: AsyncSession, row: OutboxMessage) -> None:
        now = self.clock.now()
        row.created_at = now
        row.next_attempt_at = now
        session.add(row)
        self._wake_on_commit(session)

    def _wake_on_commit(self, session: AsyncSession) -> None:
        sync = session.sync_session
        if sync.info.get("outbox_wake"):
            return
        sync.info["outbox_wake"] = True

        def _after_commit(_s: Any) -> None:
            sync.info.pop("outbox_wake", None)
            for callback in self._listeners:
                callback()

        event.listen(sync, "after_commit", _after_commit, once=True)
