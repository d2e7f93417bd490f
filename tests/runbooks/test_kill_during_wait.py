"""SIGKILL the bot while a run is in a `wait` step: the restarted bot resumes
the run where it was, and every step runs and posts exactly once."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from sqlmodel import col, select

from bot.runbooks.models import RunbookRun, RunbookStepRecord
from tests.conftest import DATA, SIGNING_SECRET, DbTarget, eventually
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import SlackRequester
from tests.runbooks.conftest import TEST_RUNBOOKS
from tests.test_crash_recovery import bot_process, free_port, wait_ready


async def _run(target: DbTarget) -> tuple[RunbookRun | None, list[RunbookStepRecord]]:
    db = target.database()
    try:
        async with db.transaction() as s:
            run = (await s.exec(select(RunbookRun))).first()
            records = list(
                (await s.exec(select(RunbookStepRecord).order_by(col(RunbookStepRecord.id)))).all()
            )
        return run, records
    finally:
        await db.dispose()


async def test_sigkill_during_wait_resumes_and_finishes_once(
    db_target: DbTarget, slack: FakeSlack, tmp_path: Path
) -> None:
    config = tmp_path / "chatops.yaml"
    config.write_text(
        (DATA / "config.yaml").read_text()
        + f"\nrunbooks: {{paths: ['{TEST_RUNBOOKS}'], shell_allowlist: [printf]}}\n"
    )
    db = db_target.database()
    await db.upgrade()  # PostgreSQL is migrated by `chatops db upgrade`, as in production
    await db.dispose()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    requests = SlackRequester(url, SIGNING_SECRET)

    async def in_wait() -> bool:
        run, _records = await _run(db_target)
        # "until" is stored with the next tick (and the end of this one): the
        # run is asleep in the database, no job is in flight.
        return run is not None and run.step == 1 and "until" in run.step_state

    with bot_process(db_target, slack, port, config=config) as proc:
        await wait_ready(url)
        reply = await requests.command("/runbook", "run slow-wait", user="UCAROL", channel="C0OPS")
        assert reply.status == 200
        await eventually(in_wait, timeout=15, interval=0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    run, records = await _run(db_target)
    assert run is not None and run.status == "Running" and run.step == 1

    with bot_process(db_target, slack, port, config=config):
        await wait_ready(url)

        async def finished() -> bool:
            run, _ = await _run(db_target)
            return run is not None and run.finished

        await eventually(finished, timeout=30, interval=0.1)
        await slack.wait_for(
            "chat.postMessage", lambda c: c.ok and c.body["text"] == "after the wait", timeout=10
        )
        await asyncio.sleep(1.0)  # room for a duplicate to show up
    run, records = await _run(db_target)
    assert run is not None
    assert run.status == "Succeeded", run.error
    assert [r.name for r in records] == ["before", "pause", "after"]
    # The wait kept its deadline across the restart: 4 s after it began.
    pause = records[1]
    assert 3.9 <= (pause.finished_at - pause.started_at).total_seconds() < 15
    posted = [c.body["text"] for c in slack.calls("chat.postMessage", ok=True)]
    assert posted.count("before the wait") == 1
    assert posted.count("after the wait") == 1
