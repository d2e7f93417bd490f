"""Paging fixtures: the test config plus on-call settings, and a bot whose
clock can jump ahead (escalation delays are minutes; tests do not sleep)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from sqlmodel import col, select

from bot.app import BotApp
from bot.core.clock import OffsetClock
from bot.core.config import Config
from bot.core.config_loader import load_config
from bot.core.db import Database
from bot.paging.models import Page
from bot.runtime import build_runtime
from tests.conftest import DATA, SIGNING_SECRET, DbTarget, RunningBot, bot_settings
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import SlackRequester


def paging_config() -> Config:
    base = load_config(DATA / "config.yaml", env={})
    extra: dict[str, Any] = yaml.safe_load((DATA / "oncall.yaml").read_text())
    return Config.model_validate({**base.model_dump(), **extra})


@pytest.fixture
def config() -> Config:
    return paging_config()


class PagingBot(RunningBot):
    clock: OffsetClock

    def dms(self, user: str) -> list[str]:
        return [
            c.body["text"]
            for c in self.slack.calls("chat.postMessage", ok=True)
            if c.body.get("channel") == user
        ]

    async def pages(self) -> list[Page]:
        async with self.bot.db.transaction() as s:
            return list((await s.exec(select(Page).order_by(col(Page.id)))).all())


@pytest.fixture
async def paging_bot(
    db: Database, db_target: DbTarget, slack: FakeSlack, config: Config
) -> AsyncIterator[PagingBot]:
    clock = OffsetClock()
    bot = BotApp(
        bot_settings(slack, db_target),
        config,
        db=db,
        clock=clock,
        outbox_rate=50,
        outbox_burst=20,
        scheduler_poll=0.05,
        scm=None,
        metrics_source=None,
    )
    runtime = build_runtime(bot)
    await runtime.start("127.0.0.1", 0)
    assert runtime.url is not None
    pb = PagingBot(runtime, slack, SlackRequester(runtime.url, SIGNING_SECRET))
    pb.clock = clock
    try:
        yield pb
    finally:
        await runtime.stop()
