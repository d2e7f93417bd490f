"""What the outbox sender hands to a transport, and how a transport reports
failure. Slack (bot/slack/delivery.py) and the terminal (bot/console.py)
implement Deliverer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bot.core.chat import Message


@dataclass(frozen=True)
class Delivery:
    outbox_id: int
    kind: str  # OutboxKind
    channel: str
    message: Message
    key: str | None = None
    thread_key: str | None = None
    thread_ts: str | None = None  # resolved ts of the thread's parent
    ts: str | None = None  # for an update: the ts of the message to edit
    user: str | None = None
    response_url: str | None = None
    ephemeral: bool = True
    replace_original: bool = False
    reply_broadcast: bool = False


class DeliveryError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RateLimited(DeliveryError):
    def __init__(self, retry_after: float, reason: str = "rate_limited") -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class TransientError(DeliveryError):
    """Worth retrying: 5xx, timeouts, connection errors."""


class PermanentError(DeliveryError):
    """Retrying cannot help: unknown channel, invalid blocks, bad token."""


class Deliverer(Protocol):
    async def deliver(self, delivery: Delivery) -> str | None:
        """Send; return the message's ts when the transport has one."""
        ...

    async def find_delivered(self, delivery: Delivery, since: datetime) -> str | None:
        """After a crash mid-send: was this post delivered? Its ts if so,
        None if not. Raise NotImplementedError when it cannot be known."""
        ...
