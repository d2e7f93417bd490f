"""SIGKILL the bot between two escalation steps and start it again: the next
step fires at its original due time (± the scheduler's tick), exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from sqlmodel import select

from bot.core.db import Database
from bot.paging.models import Escalation
from tests.conftest import DATA, SIGNING_SECRET, DbTarget
from tests.fakes.slack_api import FakeSlack
from tests.incidents.conftest import TOKEN, alert, notification
from tests.test_crash_recovery import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[2]
DELAY = 4.0


def write_config(path: Path) -> None:
    data = {
        **yaml.safe_load((DATA / "config.yaml").read_text()),
        **yaml.safe_load((DATA / "oncall.yaml").read_text()),
    }
    for step in data["oncall"]["escalation_policies"][0]["steps"]:
        step["delay"] = f"{int(DELAY)}s"
    data["oncall"]["escalation_policies"][0]["repeat"] = 0
    path.write_text(yaml.safe_dump(data))


def start(target: DbTarget, slack: FakeSlack, config: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_"))}
    env.update(target.env())
    env.update(
        {
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.base_url,
            "CHATOPS_CONFIG": str(config),
            "CHATOPS_WEBHOOK_TOKEN": TOKEN,
            "CHATOPS_LOG_LEVEL": "WARNING",
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_next_step_fires_on_time_once_after_sigkill(
    db_target: DbTarget,
    db: Database,
    slack: FakeSlack,
    tmp_path: Path,
) -> None:
    import aiohttp

    config = tmp_path / "chatops.yaml"
    write_config(config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(db_target, slack, config, port)
    try:
        await wait_ready(url)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                url + "/webhooks/alertmanager",
                json=notification([alert(severity="page")]),
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as resp,
        ):
            assert resp.status == 200
        [first] = await slack.wait_for(
            "chat.postMessage", lambda c: c.ok and c.body.get("channel") == "UALICE", timeout=10
        )
        proc.send_signal(signal.SIGKILL)  # between step 1 and step 2
        await asyncio.to_thread(proc.wait, 10)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = start(db_target, slack, config, port)
    try:
        await wait_ready(url)
        ready = time.time()
        [second] = await slack.wait_for(
            "chat.postMessage", lambda c: c.ok and c.body.get("channel") == "UBOB", timeout=20
        )
        # Step 2 is due DELAY after the escalation started (step 1 pages at once).
        # The first DM's arrival is no reference: its delivery may lag the start.
        async with db.transaction() as session:
            [esc] = (await session.exec(select(Escalation))).all()
        to_wall = time.time() - time.monotonic()  # the fake Slack stamps monotonic time
        due = esc.started_at.timestamp() + DELAY
        arrived = second.time + to_wall
        # Never early; late by at most the scheduler's tick and the delivery,
        # counted from when the restarted bot was up (on a loaded machine its
        # start can take longer than DELAY).
        assert arrived >= due, f"second step {arrived - due:.2f}s early"
        assert arrived - max(due, ready) < 1.5, f"second step {arrived - due:+.2f}s late"
        assert first.time + to_wall >= esc.started_at.timestamp()
        await asyncio.sleep(DELAY + 1)
        assert (
            len(
                [
                    c
                    for c in slack.calls("chat.postMessage", ok=True)
                    if c.body.get("channel") == "UBOB"
                ]
            )
            == 1
        )
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 15)
