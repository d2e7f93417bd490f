"""Kill -9 the bot between writing a message and delivering it: nothing is lost,
nothing is sent twice."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
from sqlmodel import select

from bot.core.db import Database
from bot.core.models import OutboxMessage, OutboxStatus
from tests.conftest import BOT_TOKEN, DATA, SIGNING_SECRET, DbTarget, eventually
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import SlackRequester

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def bot_process(
    target: DbTarget, slack: FakeSlack, port: int, config: Path = DATA / "config.yaml"
) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_"))}
    env.update(target.env())
    env.update({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": slack.base_url, "CHATOPS_CONFIG": str(config),
                "CHATOPS_LOG_LEVEL": "WARNING"})
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def wait_ready(url: str, timeout: float = 20.0) -> None:
    async def ready() -> bool:
        try:
            async with aiohttp.ClientSession() as http, http.get(url + "/readyz") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(ready, timeout=timeout, interval=0.1)


async def outbox_rows(target: DbTarget) -> list[OutboxMessage]:
    db: Database = target.database()
    try:
        async with db.transaction() as s:
            return list((await s.exec(select(OutboxMessage))).all())
    finally:
        await db.dispose()


async def test_sigkill_between_write_and_delivery_loses_nothing(
    db_target: DbTarget, db: Database, slack: FakeSlack
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    requests = SlackRequester(url, SIGNING_SECRET)
    users = ["UALICE", "UBOB", "UCAROL"]
    slack.fail("chat.postEphemeral", 503)  # Slack is down: replies stay in the outbox
    with bot_process(db_target, slack, port) as proc:
        await wait_ready(url)
        for user in users:
            assert (await requests.command("/help", user=user, channel="C0OPS")).status == 200
        await eventually(lambda: _count_rows(db_target, 3), timeout=10)
        await slack.wait_for("chat.postEphemeral")  # at least one attempt failed
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert {r.status for r in await outbox_rows(db_target)} <= {
        OutboxStatus.PENDING, OutboxStatus.SENDING}
    slack.heal()
    slack.clear()
    with bot_process(db_target, slack, port):
        await wait_ready(url)
        # A reply that was mid-delivery waits for the dead process's lane lease (10 s).
        await slack.wait_for("chat.postEphemeral", lambda c: c.ok, count=3, timeout=30)

        async def all_sent() -> bool:  # marked after Slack's answer, so poll
            return all(r.status == OutboxStatus.SENT for r in await outbox_rows(db_target))

        await eventually(all_sent, timeout=10)
        await asyncio.sleep(1.0)  # room for any duplicate to show up
    delivered = [c.body["user"] for c in slack.calls("chat.postEphemeral", ok=True)]
    assert sorted(delivered) == sorted(users)


async def _count_rows(target: DbTarget, n: int) -> bool:
    return len(await outbox_rows(target)) >= n
