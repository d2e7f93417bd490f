"""Durable timers: jobs live in the database and survive restarts.

A worker claims due jobs under a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`,
SQLite: the database write lock), runs the handler for the job's kind, and
marks it done, or retries it with backoff. A heartbeat extends the lease while
the handler runs, so another process takes a job over only when its owner is
gone; completion is fenced on the lease, so a job whose lease was lost
cannot be completed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.clock import Clock
from bot.core.db import Database
from bot.core.metrics import BotMetrics
from bot.core.models import Job, JobStatus

log = logging.getLogger("chatops.scheduler")

JobHandler = Callable[["JobContext"], Awaitable[None]]


class LeaseLost(Exception):
    """Another worker owns this job now; this worker's results are discarded."""


class JobContext:
    def __init__(self, scheduler: Scheduler, job: Job) -> None:
        self.scheduler = scheduler
        self.job = job
        self.finished = False

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A transaction that commits only if this worker still owns the job."""
        async with self.scheduler.db.transaction() as session:
            await self.scheduler._fence(session, self.job, extend=True)
            yield session

    async def finish(self, session: AsyncSession) -> None:
        """Mark the job done inside the handler's own transaction, so its
        effects and its completion commit together (exactly-once effects)."""
        await self.scheduler._complete(session, self.job)
        self.finished = True


class Scheduler:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        metrics: BotMetrics,
        instance_id: str,
        *,
        lease: timedelta = timedelta(seconds=30),
        poll_interval: float = 0.25,
        batch: int = 10,
        concurrency: int = 8,
    ) -> None:
        self.db = db
        self.clock = clock
        self.metrics = metrics
        self.instance_id = instance_id
        self.lease = lease
        self.poll_interval = poll_interval
        self.batch = batch
        self._handlers: dict[str, JobHandler] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- registration and scheduling -------------------------------------

    def handler(self, kind: str) -> Callable[[JobHandler], JobHandler]:
        def decorate(fn: JobHandler) -> JobHandler:
            if kind in self._handlers:
                raise ValueError(f"job kind {kind!r} registered twice")
            self._handlers[kind] = fn
            return fn

        return decorate

    async def schedule(
        self,
        session: AsyncSession,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        due_at: datetime | None = None,
        delay: float = 0.0,
        key: str | None = None,
        max_attempts: int = 10,
        replace: bool = True,
    ) -> None:
        """Add a job in the caller's transaction. A pending job with the same
        key is replaced (new due time and payload) instead of duplicated, or,
        with replace=False, left as it is (a digest that is already coming)."""
        now = self.clock.now()
        due = due_at or now + timedelta(seconds=delay)
        payload = payload or {}
        if key is not None:
            existing = (await session.exec(
                select(Job).where(Job.key == key).with_for_update())).first()
            if existing is not None and existing.status == JobStatus.PENDING and not replace:
                return
            if existing is not None and existing.status == JobStatus.PENDING:
                existing.kind, existing.payload, existing.due_at = kind, payload, due
                existing.attempts, existing.max_attempts = 0, max_attempts
                session.add(existing)
                self._notify_after_commit(session)
                return
            if existing is not None:
                # A running or finished job keeps its id; the key moves on.
                existing.key = None
                session.add(existing)
                await session.flush()
        job = Job(kind=kind, key=key, payload=payload, due_at=due, created_at=now,
                  max_attempts=max_attempts)
        try:
            async with session.begin_nested():
                session.add(job)
        except IntegrityError:
            # Another process inserted the same key first: theirs stands.
            log.info("job key already scheduled", extra={"key": key, "kind": kind})
        self._notify_after_commit(session)

    async def cancel(self, session: AsyncSession, key: str) -> bool:
        job = (await session.exec(
            select(Job).where(Job.key == key, Job.status == JobStatus.PENDING)
            .with_for_update())).first()
        if job is None:
            return False
        job.status, job.finished_at, job.key = JobStatus.DONE, self.clock.now(), None
        job.last_error = "cancelled"
        session.add(job)
        return True

    def _notify_after_commit(self, session: AsyncSession) -> None:
        from sqlalchemy import event

        sync = session.sync_session
        if not sync.info.get("scheduler_wake"):
            sync.info["scheduler_wake"] = True

            def _wake(_s: Any) -> None:
                sync.info.pop("scheduler_wake", None)
                self._wake.set()

            event.listen(sync, "after_commit", _wake, once=True)

    # -- running ------------------------------------------------------------

    def start(self) -> None:
        if self._loop_task is None:
            self._stopping = False
            self._loop_task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self, grace: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
            self._loop_task = None
        if self._running:
            _done, pending = await asyncio.wait(self._running, timeout=grace)
            for task in pending:
                task.cancel()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                claimed = await self.run_due()
            except Exception:
                log.exception("scheduler poll failed; retrying")
                claimed = 0
            if claimed >= self.batch:
                continue  # more may be due right now
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def run_due(self) -> int:
        """Claim due jobs and start them; returns how many were claimed."""
        free = self._free_slots()
        if free == 0:
            return 0
        jobs = await self._claim(min(free, self.batch))
        for job in jobs:
            await self._slots.acquire()
            task = asyncio.create_task(self._run(job), name=f"job-{job.id}-{job.kind}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return len(jobs)

    async def run_until_idle(self, timeout: float = 10.0) -> None:
        """Run every job due now (and what those schedule for now); for tests."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            claimed = await self.run_due()
            if self._running:
                await asyncio.wait(self._running)
            elif claimed == 0:
                return
        raise TimeoutError("jobs still due after timeout")

    def _free_slots(self) -> int:
        return self._slots._value

    async def _claim(self, limit: int) -> list[Job]:
        now = self.clock.now()
        due = (
            select(Job.id)
            .where(or_(
                and_(col(Job.status) == JobStatus.PENDING, col(Job.due_at) <= now),
                # A running job whose lease ran out: its worker died.
                and_(col(Job.status) == JobStatus.RUNNING, col(Job.lease_until) < now),
            ))
            .order_by(col(Job.due_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(Job)
            .where(col(Job.id).in_(due.scalar_subquery()))
            .values(status=JobStatus.RUNNING, lease_owner=self.instance_id,
                    lease_until=now + self.lease, attempts=col(Job.attempts) + 1)
            .returning(Job)
        )
        async with self.db.transaction() as session:
            result = await session.exec(stmt)
            jobs: list[Job] = list(result.scalars().all())
        for job in jobs:
            lag = max(0.0, (now - job.due_at).total_seconds())
            self.metrics.scheduler_lag.set(lag)
            self.metrics.scheduler_lag_hist.observe(lag)
        return jobs

    async def _run(self, job: Job) -> None:
        ctx = JobContext(self, job)
        heartbeat = asyncio.create_task(self._heartbeat(job))
        try:
            handler = self._handlers.get(job.kind)
            if handler is None:
                raise LookupError(f"no handler for job kind {job.kind!r}")
            await handler(ctx)
            if not ctx.finished:
                async with self.db.transaction() as session:
                    await self._complete(session, job)
            self.metrics.jobs.labels(job.kind, "ok").inc()
        except LeaseLost:
            self.metrics.jobs.labels(job.kind, "lease_lost").inc()
            log.warning("job lease lost; another worker has it", extra={"job": job.id})
        except Exception as exc:
            self.metrics.jobs.labels(job.kind, "error").inc()
            await self._fail(job, exc)
        finally:
            heartbeat.cancel()
            self._slots.release()

    async def _heartbeat(self, job: Job) -> None:
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.db.transaction() as session:
                    await self._fence(session, job, extend=True)
            except LeaseLost:
                return
            except Exception:
                log.warning("job heartbeat failed", extra={"job": job.id}, exc_info=True)

    async def _fence(self, session: AsyncSession, job: Job, *, extend: bool) -> None:
        values: dict[str, Any] = {}
        if extend:
            values["lease_until"] = self.clock.now() + self.lease
        stmt = (
            update(Job)
            .where(col(Job.id) == job.id, col(Job.lease_owner) == self.instance_id,
                   col(Job.status) == JobStatus.RUNNING)
            .values(**(values or {"lease_owner": self.instance_id}))
        )
        result = await session.exec(stmt)
        if result.rowcount != 1:
            raise LeaseLost(str(job.id))

    async def _complete(self, session: AsyncSession, job: Job) -> None:
        await self._fence(session, job, extend=False)
        await session.exec(update(Job).where(col(Job.id) == job.id).values(
            status=JobStatus.DONE, finished_at=self.clock.now(), lease_owner=None,
            lease_until=None, key=None))

    async def _fail(self, job: Job, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        dead = job.attempts >= job.max_attempts
        # Exponential backoff with jitter, capped: 2s, 4s, 8s ... 5 min.
        delay = min(300.0, 2.0 ** job.attempts) * random.uniform(0.8, 1.2)
        values: dict[str, Any] = {"last_error": error, "lease_owner": None, "lease_until": None}
        if dead:
            values.update(status=JobStatus.DEAD, finished_at=self.clock.now())
            log.error("job gave up", extra={"job": job.id, "kind": job.kind, "error": error})
        else:
            values.update(status=JobStatus.PENDING,
                          due_at=self.clock.now() + timedelta(seconds=delay))
            log.warning("job failed; will retry", extra={
                "job": job.id, "kind": job.kind, "attempt": job.attempts, "error": error,
                "retry_in_s": round(delay, 1)})
        try:
            async with self.db.transaction() as session:
                await session.exec(update(Job).where(
                    col(Job.id) == job.id, col(Job.lease_owner) == self.instance_id
                ).values(**values))
        except Exception:
            # The lease will expire and the job will be retried anyway.
            log.exception("could not record job failure", extra={"job": job.id})
