"""Postmortem fixtures: a running bot wired to the fake Jira (through the real
`jira` client), with quick retries and reminders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlmodel import col, select

from bot.app import BotApp
from bot.core.config import Config
from bot.core.db import Database
from bot.postmortems.models import ActionItem, Postmortem
from bot.runtime import build_runtime
from tests.conftest import SIGNING_SECRET, DbTarget, RunningBot, bot_settings, eventually
from tests.deploys.conftest import cluster, deploy_bot, github  # noqa: F401 (fixtures)
from tests.fakes.jira_api import FakeJira
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import SlackRequester

JIRA_USER, JIRA_TOKEN = "chatops@example.com", "jira-token"


@pytest.fixture
def config(config: Config) -> Config:
    pm = config.postmortems
    jira = pm.jira.model_copy(
        update={
            "project": "OPS",
            "components": ["shop"],
            "users": {"UBOB": "bob-account"},
            "retry_first": timedelta(seconds=0.3),
            "retry_max": timedelta(seconds=1),
        }
    )
    settings = pm.model_copy(
        update={
            "jira": jira,
            "remind_after": timedelta(seconds=1),
            "remind_every": timedelta(seconds=1),
        }
    )
    return config.model_copy(update={"postmortems": settings})


@pytest.fixture
async def jira() -> AsyncIterator[FakeJira]:
    async with FakeJira(cloud=False, user=JIRA_USER, token=JIRA_TOKEN) as fake:
        fake.add_project("OPS", components=["shop"])
        fake.add_user("bob@example.com", display_name="Bob", name="bob-account")
        yield fake


@pytest.fixture
async def pm_bot(
    db: Database, db_target: DbTarget, slack: FakeSlack, config: Config, jira: FakeJira
) -> AsyncIterator[RunningBot]:
    settings = bot_settings(
        slack, db_target, JIRA_URL=jira.base_url, JIRA_USER=JIRA_USER, JIRA_TOKEN=JIRA_TOKEN
    )
    bot = BotApp(settings, config, db=db, outbox_rate=50.0, outbox_burst=20, scheduler_poll=0.05)
    runtime = build_runtime(bot)
    await runtime.start("127.0.0.1", 0)
    assert runtime.url is not None
    try:
        yield RunningBot(runtime, slack, SlackRequester(runtime.url, SIGNING_SECRET))
    finally:
        await runtime.stop()


async def say(rb: RunningBot, command: str, text: str, user: str = "UALICE") -> str:
    name = f"r{len(rb.slack.calls())}-{command}"
    await rb.requests.command(command, text, user=user, response_url=rb.slack.response_url(name))
    [call] = await rb.slack.wait_for("response_url", lambda c: c.name == name, timeout=15)
    return str(call.body["text"])


async def postmortem(db: Database, incident_id: int = 1) -> tuple[Postmortem, list[ActionItem]]:
    async with db.transaction() as s:
        pm = (await s.exec(select(Postmortem).where(Postmortem.incident_id == incident_id))).one()
        items = (
            await s.exec(
                select(ActionItem)
                .where(ActionItem.postmortem_id == pm.id)
                .order_by(col(ActionItem.id))
            )
        ).all()
    return pm, list(items)


async def wait_jira(db: Database, *states: str, timeout: float = 20) -> Postmortem:
    async def reached() -> bool:
        try:
            return (await postmortem(db))[0].jira_status in states
        except Exception:
            return False

    await eventually(reached, timeout=timeout, interval=0.05)
    return (await postmortem(db))[0]
