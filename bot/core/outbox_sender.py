"""Delivers the outbox: in order per lane, at most `rate` messages per second
per lane with a small burst (GCRA), honouring Retry-After, retrying transient
failures with backoff, never sending a message twice.

Lanes are leased in the database, so several replicas share the work and a
lane is drained by one process at a time; the limiter's state is stored with
the lease, so the rate holds across replicas and restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import trace
from sqlalchemy import func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.chat import Message
from bot.core.clock import Clock
from bot.core.db import Database
from bot.core.delivery import (
    Deliverer,
    Delivery,
    DeliveryError,
    PermanentError,
    RateLimited,
)
from bot.core.metrics import BotMetrics
from bot.core.models import OutboxKind, OutboxLane, OutboxMessage, OutboxStatus

log = logging.getLogger("chatops.outbox")
tracer = trace.get_tracer("chatops.outbox")

_OPEN = (OutboxStatus.PENDING, OutboxStatus.SENDING)


class OutboxSender:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        metrics: BotMetrics,
        deliverer: Deliverer,
        instance_id: str,
        *,
        rate: float = 1.0,
        burst: int = 3,
        # Short: after a crash, the dead process's lanes wait this long.
        lease: timedelta = timedelta(seconds=10),
        poll_interval: float = 0.25,
        max_lanes: int = 16,
    ) -> None:
        self.db = db
        self.clock = clock
        self.metrics = metrics
        self.deliverer = deliverer
        self.instance_id = instance_id
        self.interval = timedelta(seconds=1.0 / rate)
        self.burst = burst
        self.lease = lease
        self.poll_interval = poll_interval
        self.max_lanes = max_lanes
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._idle = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._loop(), name="outbox-sender")

    async def stop(self) -> None:
        self._stopping = True
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._lanes:
            await asyncio.wait(list(self._lanes.values()), timeout=10)

    async def backlog(self) -> int:
        async with self.db.transaction() as session:
            count = await session.exec(select(func.count()).select_from(OutboxMessage).where(
                col(OutboxMessage.status).in_(_OPEN)))
            return int(count.one())

    async def _loop(self) -> None:
        last_gauge = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                for lane in await self._due_lanes():
                    if lane not in self._lanes and len(self._lanes) < self.max_lanes:
                        task = asyncio.create_task(self._drain(lane), name=f"lane-{lane}")
                        self._lanes[lane] = task
                        task.add_done_callback(self._forget_lane(lane))
                if loop.time() - last_gauge > 2:
                    self.metrics.outbox_backlog.set(await self.backlog())
                    last_gauge = loop.time()
            except Exception:
                log.exception("outbox poll failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    def _forget_lane(self, lane: str) -> Callable[[asyncio.Task[None]], None]:
        def forget(_task: asyncio.Task[None]) -> None:
            self._lanes.pop(lane, None)

        return forget

    async def _due_lanes(self) -> list[str]:
        now = self.clock.now()
        async with self.db.transaction() as session:
            rows = await session.exec(
                select(OutboxMessage.lane)
                .where(col(OutboxMessage.status).in_(_OPEN),
                       col(OutboxMessage.next_attempt_at) <= now)
                .distinct().limit(200))
            return list(rows.all())

    # -- one lane -----------------------------------------------------------

    async def _drain(self, lane: str) -> None:
        try:
            if not await self._claim_lane(lane):
                return
            renewed = asyncio.get_running_loop().time()
            while not self._stopping:
                if asyncio.get_running_loop().time() - renewed > self.lease.total_seconds() / 3:
                    if not await self._claim_lane(lane):
                        return
                    renewed = asyncio.get_running_loop().time()
                head = await self._head(lane)
                if head is None or head.next_attempt_at > self.clock.now():
                    break  # empty, or the head waits for a retry: order forbids skipping it
                wait = await self._rate_wait(lane)
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(),
                                               min(wait, self.lease.total_seconds() / 4))
                    continue
                await self._send(head)
        except Exception:
            log.exception("outbox lane failed; will retry", extra={"lane": lane})
        finally:
            with contextlib.suppress(Exception):
                await self._release_lane(lane)

    async def _claim_lane(self, lane: str) -> bool:
        now = self.clock.now()
        async with self.db.transaction() as session:
            insert = (postgresql.insert if self.db.is_postgres else sqlite.insert)(OutboxLane)
            await session.exec(insert.values(lane=lane).on_conflict_do_nothing())
            result = await session.exec(update(OutboxLane).where(
                col(OutboxLane.lane) == lane,
                or_(col(OutboxLane.lease_owner).is_(None), col(OutboxLane.lease_until) < now,
                    col(OutboxLane.lease_owner) == self.instance_id),
            ).values(lease_owner=self.instance_id, lease_until=now + self.lease))
            return bool(result.rowcount == 1)

    async def _release_lane(self, lane: str) -> None:
        async with self.db.transaction() as session:
            await session.exec(update(OutboxLane).where(
                col(OutboxLane.lane) == lane, col(OutboxLane.lease_owner) == self.instance_id,
            ).values(lease_owner=None, lease_until=None))

    async def _head(self, lane: str) -> OutboxMessage | None:
        async with self.db.transaction() as session:
            return (await session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.lane == lane, col(OutboxMessage.status).in_(_OPEN))
                .order_by(col(OutboxMessage.id)).limit(1))).first()

    def _interval(self, lane: str) -> timedelta:
        """Slack's ~1 message/s applies per channel. Replies through a
        response_url are not subject to it, and ephemeral messages are a
        separate, higher tier: a person's answers never wait behind a channel."""
        if lane.startswith("respond:"):
            return timedelta(0)
        if lane.startswith("ephemeral:"):
            return min(self.interval, timedelta(milliseconds=100))
        return self.interval

    async def _rate_wait(self, lane: str) -> float:
        """Seconds until the lane may send again (GCRA with `burst` tolerance)."""
        async with self.db.transaction() as session:
            state = await session.get(OutboxLane, lane)
        now = self.clock.now()
        if state is None:
            return 0.0
        waits = [0.0]
        if state.paused_until is not None:
            waits.append((state.paused_until - now).total_seconds())
        if state.tat is not None:
            allowed_at = state.tat - self._interval(lane) * (self.burst - 1)
            waits.append((allowed_at - now).total_seconds())
        return max(waits)

    async def _send(self, head: OutboxMessage) -> None:
        assert head.id is not None
        with tracer.start_as_current_span("outbox deliver") as span:
            span.set_attribute("chatops.outbox.kind", head.kind)
            span.set_attribute("chatops.outbox.lane", head.lane)
            in_doubt = head.status == OutboxStatus.SENDING and head.kind == OutboxKind.POST
            # Mark the row SENDING *before* reading its content: from then on an
            # edit queues a new update instead of coalescing into this row, so
            # no edit committed meanwhile can be read too early and lost.
            if not in_doubt and not await self._mark_sending(head.id):
                return
            async with self.db.transaction() as session:
                delivery = await self._prepare(session, head)
            if delivery is None:
                return
            if in_doubt:
                # The previous owner died mid-send: ask before sending again.
                with contextlib.suppress(NotImplementedError):
                    ts = await self._find_delivered(delivery, head.created_at)
                    if ts is not None:
                        log.info("in-doubt message was delivered; not resending",
                                 extra={"outbox_id": head.id})
                        await self._mark_sent(head, ts, count_rate=False)
                        return
                if not await self._mark_sending(head.id):
                    return
            try:
                ts = await self.deliverer.deliver(delivery)
            except RateLimited as exc:
                await self._retry(head, exc, delay=exc.retry_after, pause_lane=True)
            except PermanentError as exc:
                await self._give_up(head, exc.reason)
            except DeliveryError as exc:
                await self._retry(head, exc, delay=_backoff(head.attempts + 1))
            except Exception as exc:  # network stacks raise many types; all are transient
                await self._retry(head, DeliveryError(f"{type(exc).__name__}: {exc}"),
                                  delay=_backoff(head.attempts + 1))
            else:
                await self._mark_sent(head, ts)

    async def _find_delivered(self, delivery: Delivery, since: datetime) -> str | None:
        try:
            return await self.deliverer.find_delivered(delivery, since)
        except DeliveryError:
            # Cannot tell right now; sending again risks a duplicate, waiting
            # risks nothing: let the retry path handle it.
            raise NotImplementedError from None

    async def _prepare(self, session: AsyncSession, head: OutboxMessage) -> Delivery | None:
        """Fresh payload (edits may have coalesced into it) and resolved ts refs."""
        row = await session.get(OutboxMessage, head.id, populate_existing=True)
        if row is None or row.status not in _OPEN:
            return None
        head.payload, head.status = row.payload, row.status
        payload: dict[str, Any] = row.payload
        thread_ts, ts = row.thread_ts, None
        if row.kind == OutboxKind.UPDATE or row.thread_key:
            ref_key = row.key if row.kind == OutboxKind.UPDATE else row.thread_key
            parent = (await session.exec(
                select(OutboxMessage).where(OutboxMessage.key == ref_key,
                                            OutboxMessage.kind == OutboxKind.POST)
                .order_by(col(OutboxMessage.id).desc()).limit(1))).first()
            if parent is None or parent.status == OutboxStatus.FAILED or parent.ts is None:
                if row.kind == OutboxKind.UPDATE:
                    row.status, row.last_error = OutboxStatus.FAILED, "original message not sent"
                    session.add(row)
                    return None
                # A reply whose thread never started still carries news: post it
                # at the top of the channel rather than lose it.
                thread_ts = None
            elif row.kind == OutboxKind.UPDATE:
                ts = parent.ts
            else:
                thread_ts = parent.ts
        return Delivery(
            outbox_id=row.id or 0, kind=row.kind, channel=row.channel,
            message=Message.model_validate(payload["message"]), key=row.key,
            thread_key=row.thread_key, thread_ts=thread_ts, ts=ts, user=payload.get("user"),
            response_url=payload.get("response_url"),
            ephemeral=payload.get("ephemeral", True),
            replace_original=payload.get("replace_original", False),
            reply_broadcast=payload.get("reply_broadcast", False),
        )

    async def _mark_sending(self, outbox_id: int) -> bool:
        async with self.db.transaction() as session:
            result = await session.exec(update(OutboxMessage).where(
                col(OutboxMessage.id) == outbox_id, col(OutboxMessage.status).in_(_OPEN),
            ).values(status=OutboxStatus.SENDING, attempts=col(OutboxMessage.attempts) + 1))
            return bool(result.rowcount == 1)

    async def _mark_sent(self, head: OutboxMessage, ts: str | None, *,
                         count_rate: bool = True) -> None:
        now = self.clock.now()
        async with self.db.transaction() as session:
            await session.exec(update(OutboxMessage).where(
                col(OutboxMessage.id) == head.id,
            ).values(status=OutboxStatus.SENT, ts=ts, sent_at=now, last_error=None))
            if count_rate:
                lane = await session.get(OutboxLane, head.lane)
                if lane is not None:
                    lane.tat = max(lane.tat or now, now) + self._interval(head.lane)
                    session.add(lane)
        self.metrics.outbox_sent.labels(head.kind).inc()

    async def _retry(self, head: OutboxMessage, exc: DeliveryError, *, delay: float,
                     pause_lane: bool = False) -> None:
        now = self.clock.now()
        self.metrics.outbox_failures.labels(exc.reason[:40]).inc()
        log.warning("delivery failed; will retry", extra={
            "outbox_id": head.id, "lane": head.lane, "reason": exc.reason,
            "retry_in_s": round(delay, 2)})
        async with self.db.transaction() as session:
            await session.exec(update(OutboxMessage).where(
                col(OutboxMessage.id) == head.id,
            ).values(status=OutboxStatus.PENDING, last_error=exc.reason[:2000],
                     next_attempt_at=now + timedelta(seconds=0 if pause_lane else delay)))
            if pause_lane:
                lane = await session.get(OutboxLane, head.lane)
                if lane is not None:
                    lane.paused_until = now + timedelta(seconds=delay)
                    session.add(lane)

    async def _give_up(self, head: OutboxMessage, reason: str) -> None:
        self.metrics.outbox_failures.labels(reason[:40]).inc()
        log.error("delivery failed permanently", extra={
            "outbox_id": head.id, "lane": head.lane, "reason": reason})
        async with self.db.transaction() as session:
            await session.exec(update(OutboxMessage).where(
                col(OutboxMessage.id) == head.id,
            ).values(status=OutboxStatus.FAILED, last_error=reason[:2000]))


def _backoff(attempt: int) -> float:
    """1s, 2s, 4s ... capped at 30s (so recovery after an outage is quick), jittered."""
    return min(30.0, 2.0 ** (attempt - 1)) * random.uniform(0.8, 1.2)
