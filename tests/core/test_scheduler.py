"""The durable scheduler on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from sqlmodel import select

from bot.core.clock import SystemClock
from bot.core.db import Database
from bot.core.metrics import BotMetrics
from bot.core.models import Job, JobStatus
from bot.core.scheduler import JobContext, Scheduler
from tests.conftest import DbTarget, eventually


def make_scheduler(db: Database, name: str, **kw: object) -> Scheduler:
    return Scheduler(db, SystemClock(), BotMetrics(), name, poll_interval=0.02, **kw)  # type: ignore[arg-type]


async def job_rows(db: Database) -> list[Job]:
    async with db.transaction() as s:
        return list((await s.exec(select(Job).order_by(Job.id))).all())  # type: ignore[arg-type]


async def test_a_due_job_runs_once_with_its_payload(db: Database) -> None:
    sched = make_scheduler(db, "w1")
    seen: list[dict[str, object]] = []

    @sched.handler("greet")
    async def greet(ctx: JobContext) -> None:
        seen.append(ctx.payload)

    async with db.transaction() as s:
        await sched.schedule(s, "greet", {"who": "alice"})
    sched.start()
    await eventually(lambda: seen)
    await asyncio.sleep(0.1)
    await sched.stop()
    assert seen == [{"who": "alice"}]
    [row] = await job_rows(db)
    assert row.status == JobStatus.DONE and row.attempts == 1 and row.lease_owner is None


async def test_a_job_due_in_the_past_runs_once_after_a_restart(db: Database) -> None:
    first = make_scheduler(db, "before-restart")
    async with db.transaction() as s:
        await first.schedule(s, "tick", {"n": 1}, due_at=SystemClock().now() - timedelta(hours=1))
    # The process that scheduled it stops before running anything.
    runs: list[int] = []
    second = make_scheduler(db, "after-restart")

    @second.handler("tick")
    async def tick(ctx: JobContext) -> None:
        runs.append(int(ctx.payload["n"]))

    second.start()
    await eventually(lambda: runs)
    await asyncio.sleep(0.2)
    await second.stop()
    assert runs == [1]


async def test_failures_are_retried_with_backoff_then_given_up(db: Database) -> None:
    sched = make_scheduler(db, "w1")
    attempts: list[float] = []

    @sched.handler("flaky")
    async def flaky(ctx: JobContext) -> None:
        attempts.append(asyncio.get_running_loop().time())
        raise RuntimeError("downstream said no")

    async with db.transaction() as s:
        await sched.schedule(s, "flaky", max_attempts=2)
    await sched.run_until_idle()
    [row] = await job_rows(db)
    assert row.status == JobStatus.PENDING and row.attempts == 1
    assert "downstream said no" in (row.last_error or "")
    assert (row.due_at - SystemClock().now()).total_seconds() > 1  # backed off
    # Make it due again: the second failure is the last allowed.
    async with db.transaction() as s:
        job = (await s.exec(select(Job))).one()
        job.due_at = SystemClock().now()
        s.add(job)
    await sched.run_until_idle()
    [row] = await job_rows(db)
    assert row.status == JobStatus.DEAD and row.attempts == 2 and len(attempts) == 2


async def test_scheduling_a_pending_key_replaces_it(db: Database) -> None:
    sched = make_scheduler(db, "w1")
    now = SystemClock().now()
    for version, hours in ((1, 1), (2, 2)):
        async with db.transaction() as s:
            await sched.schedule(s, "advance", {"v": version}, key="deploy-7",
                                 due_at=now + timedelta(hours=hours))
    [row] = await job_rows(db)
    assert row.payload == {"v": 2} and row.due_at == now + timedelta(hours=2)
    async with db.transaction() as s:
        assert await sched.cancel(s, "deploy-7")
        assert not await sched.cancel(s, "deploy-7")
    [row] = await job_rows(db)
    assert row.status == JobStatus.DONE and row.last_error == "cancelled"


async def test_a_handler_can_schedule_its_own_successor_under_the_same_key(db: Database) -> None:
    sched = make_scheduler(db, "w1")
    runs: list[int] = []

    @sched.handler("step")
    async def step(ctx: JobContext) -> None:
        n = int(ctx.payload["n"])
        runs.append(n)
        async with ctx.transaction() as s:
            if n < 3:
                await sched.schedule(s, "step", {"n": n + 1}, key="chain")
            await ctx.finish(s)

    async with db.transaction() as s:
        await sched.schedule(s, "step", {"n": 1}, key="chain")
    await sched.run_until_idle()
    assert runs == [1, 2, 3]
    rows = await job_rows(db)
    assert [r.status for r in rows] == [JobStatus.DONE] * 3


async def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_complete(
    db: Database,
) -> None:
    dead = make_scheduler(db, "dead-worker", lease=timedelta(milliseconds=200))
    async with db.transaction() as s:
        await dead.schedule(s, "work")
    [claimed] = await dead._claim(1)  # claimed, then the process "dies"
    await asyncio.sleep(0.3)
    alive = make_scheduler(db, "alive-worker")
    ran: list[str] = []

    @alive.handler("work")
    async def work(ctx: JobContext) -> None:
        ran.append(ctx.scheduler.instance_id)

    await alive.run_until_idle()
    assert ran == ["alive-worker"]
    [row] = await job_rows(db)
    assert row.status == JobStatus.DONE and row.attempts == 2
    # The dead worker waking up late finds its lease gone.
    from bot.core.scheduler import LeaseLost

    with pytest.raises(LeaseLost):
        async with db.transaction() as s:
            await dead._complete(s, claimed)


async def test_two_workers_never_run_one_job_twice(db_target: DbTarget, db: Database) -> None:
    """Two schedulers with their own engines (as two processes would have)."""
    n_jobs = 300
    other_db = db_target.database()
    workers = [make_scheduler(db, "w1", batch=20), make_scheduler(other_db, "w2", batch=20)]
    runs: Counter[int] = Counter()
    by_worker: Counter[str] = Counter()
    active: set[int] = set()
    overlaps: list[int] = []

    for w in workers:
        @w.handler("count")
        async def count(ctx: JobContext) -> None:
            n = int(ctx.payload["n"])
            if n in active:
                overlaps.append(n)
            active.add(n)
            await asyncio.sleep(0.001)
            runs[n] += 1
            by_worker[ctx.scheduler.instance_id] += 1
            active.discard(n)

    async with db.transaction() as s:
        for n in range(n_jobs):
            await workers[0].schedule(s, "count", {"n": n})
    for w in workers:
        w.start()
    await eventually(lambda: sum(runs.values()) >= n_jobs, timeout=60)
    await asyncio.sleep(0.3)
    for w in workers:
        await w.stop()
    await other_db.dispose()
    assert overlaps == []
    assert set(runs) == set(range(n_jobs))
    assert max(runs.values()) == 1, "a job ran twice"
    rows = await job_rows(db)
    assert all(r.status == JobStatus.DONE and r.attempts == 1 for r in rows)
    if db_target.backend == "postgresql":
        # With SKIP LOCKED both workers get work; on SQLite one lock serialises them.
        assert by_worker["w1"] > 0 and by_worker["w2"] > 0
