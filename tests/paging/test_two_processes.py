"""Two bot processes on one database during an escalation: each page once."""

from __future__ import annotations

import asyncio

from bot.app import BotApp
from bot.core.clock import OffsetClock
from bot.core.config import Config
from bot.core.db import Database
from bot.runtime import build_runtime
from tests.conftest import DbTarget, RunningBot, bot_settings
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import SlackRequester
from tests.incidents.conftest import alert, notification, post


async def test_two_replicas_page_each_person_once_per_step(
    db_target: DbTarget,
    db: Database,
    slack: FakeSlack,
    config: Config,
) -> None:
    clocks, runtimes = [], []
    for name in ("replica-a", "replica-b"):
        clock = OffsetClock()
        bot = BotApp(
            bot_settings(slack, db_target, CHATOPS_INSTANCE_ID=name),
            config,
            db=db_target.database(),
            clock=clock,
            outbox_rate=50,
            scheduler_poll=0.02,
            scm=None,
            metrics_source=None,
        )
        runtime = build_runtime(bot)
        await runtime.start("127.0.0.1", 0)
        clocks.append(clock)
        runtimes.append(runtime)
    try:
        entry = RunningBot(runtimes[0], slack, SlackRequester(runtimes[0].url or "", "x"))
        await post(entry, notification([alert(severity="page")]))

        async def dms(user: str, n: int) -> None:
            await slack.wait_for(
                "chat.postMessage", lambda c: c.ok and c.body.get("channel") == user, count=n
            )

        await dms("UALICE", 1)
        for clock in clocks:
            clock.advance(5 * 60)
        await dms("UBOB", 1)
        await asyncio.sleep(1.0)  # room for a duplicate to show up
        sent = [
            c.body["channel"]
            for c in slack.calls("chat.postMessage", ok=True)
            if c.body.get("channel") in ("UALICE", "UBOB")
        ]
        assert sorted(sent) == ["UALICE", "UBOB"]
    finally:
        for r in runtimes:
            await r.stop()
