"""The terminal's stand-in for Slack: what the bot would post to channels,
threads and DMs is printed with its destination, e.g. `[#deploys]`,
`[thread INC-3]`, `[DM U123]`."""

from __future__ import annotations

import itertools
import sys
import time
from datetime import datetime
from typing import TextIO

from bot.core.delivery import Delivery
from bot.core.models import OutboxKind
from bot.core.outbox import is_dm
from bot.core.render_text import render_text


def destination(d: Delivery) -> str:
    if d.kind == OutboxKind.UPDATE:
        return f"[edit {d.key}]"
    if d.kind in (OutboxKind.EPHEMERAL, OutboxKind.RESPOND):
        return f"[to {d.user}]"
    if d.thread_key:
        return f"[thread {d.thread_key}]"
    if is_dm(d.channel):
        return f"[DM {d.channel}]"
    return f"[#{d.channel.lstrip('#')}]"


class ConsoleDeliverer:
    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._seq = itertools.count(1)

    async def deliver(self, delivery: Delivery) -> str | None:
        body = render_text(delivery.message).splitlines() or [""]
        prefix = destination(delivery)
        lines = [f"{prefix} {body[0]}", *(" " * (len(prefix) + 1) + line for line in body[1:])]
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        if delivery.kind == OutboxKind.UPDATE:
            return delivery.ts
        return f"{int(time.time())}.{next(self._seq):06d}"

    async def find_delivered(self, delivery: Delivery, since: datetime) -> str | None:
        raise NotImplementedError("the terminal keeps no history")
