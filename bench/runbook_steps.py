"""Runbook engine overhead: how long a step takes when the step itself does
nothing (a `wait` of 0 s), i.e. the cost of the persisted state machine:
a tick claimed from the database, the step's start committed, its record,
timeline/audit entries, the edited progress message and the next tick
committed with the job's completion.

Baseline in the same process: the same number of scheduler jobs, each
chaining the next in the same transaction as its completion (the bare
scheduler, no runbook bookkeeping). The figure to watch is the ratio.

    .venv/bin/python bench/runbook_steps.py [--steps 200] [--database URL]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.app import BotApp  # noqa: E402
from bot.core.config import Config, RunbookSettings  # noqa: E402
from bot.core.scheduler import JobContext  # noqa: E402
from bot.core.settings import Settings  # noqa: E402
from bot.runbooks.models import RunbookRun  # noqa: E402
from bot.runtime import build_runtime  # noqa: E402
from tests.fakes.slack_api import FakeSlack  # noqa: E402


def write_runbook(folder: Path, steps: int) -> None:
    body = {
        "name": "bench",
        "title": "Bench",
        "steps": [{"name": f"s{i}", "type": "wait", "duration": "0s"} for i in range(steps)],
    }
    (folder / "bench.yaml").write_text(yaml.safe_dump(body))


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--database", default=None)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp())
    write_runbook(work, args.steps)
    database = args.database or f"sqlite+aiosqlite:///{work}/bench.db"
    data = yaml.safe_load((ROOT / "tests/data/config.yaml").read_text())
    config = Config.model_validate(data).model_copy(
        update={"runbooks": RunbookSettings(paths=[str(work)])}
    )
    async with FakeSlack() as slack:
        settings = Settings(
            SLACK_BOT_TOKEN="bench-token", SLACK_API_URL=slack.base_url, DATABASE_URL=database,
        )
        bot = BotApp(settings, config, outbox_rate=1000.0, outbox_burst=1000, scheduler_poll=0.01)
        if not database.startswith("sqlite"):
            await bot.db.upgrade()  # PostgreSQL is migrated explicitly, as in production
        runtime = build_runtime(bot)
        await runtime.start("127.0.0.1", 0)
        try:
            # Baseline: a chain of bare jobs.
            done = asyncio.Event()

            @bot.scheduler.handler("bench.chain")
            async def chain(job: JobContext) -> None:
                left = int(job.payload["left"])
                async with job.transaction() as session:
                    if left > 1:
                        await bot.scheduler.schedule(session, "bench.chain", {"left": left - 1})
                    await job.finish(session)
                if left <= 1:
                    done.set()

            start = time.perf_counter()
            async with bot.db.transaction() as session:
                await bot.scheduler.schedule(session, "bench.chain", {"left": args.steps})
            await done.wait()
            bare = time.perf_counter() - start

            from bot.core.audit import Actor

            start = time.perf_counter()
            run = await bot.runbooks.start(Actor("UALICE", "C0BENCH", "bench"), "bench", {}, None)
            while True:
                async with bot.db.transaction() as session:
                    row = await session.get(RunbookRun, run.id, populate_existing=True)
                assert row is not None
                if row.finished:
                    break
                await asyncio.sleep(0.01)
            engine = time.perf_counter() - start
            assert row.status == "Succeeded", row.error
        finally:
            await runtime.stop()
    n = args.steps
    print(f"database: {database.split(':')[0]}  steps: {n}")
    print(f"bare scheduler chain: {bare / n * 1000:.1f} ms per job")
    print(f"runbook engine:       {engine / n * 1000:.1f} ms per step")
    print(f"ratio engine/bare:    {engine / bare:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
