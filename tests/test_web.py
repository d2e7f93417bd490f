"""Health, readiness and metrics over HTTP."""

from __future__ import annotations

import aiohttp

from bot.app import BotApp
from bot.core.config import Config
from bot.core.db import Database
from bot.runtime import build_runtime
from tests.conftest import DbTarget, RunningBot, bot_settings
from tests.fakes.slack_api import FakeSlack


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text(), resp.headers.get("Content-Type", "")


async def test_health_ready_and_metrics(running_bot: RunningBot) -> None:
    rb = running_bot
    assert (await get(rb.url + "/healthz"))[0] == 200
    status, body, _ = await get(rb.url + "/readyz")
    assert status == 200 and '"ready"' in body
    await rb.requests.command("/help")
    await rb.requests.command("/help", "x y z")
    await rb.slack.wait_for("chat.postEphemeral", count=2)
    status, body, ctype = await get(rb.url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    assert 'chatops_commands_total{command="/help",outcome="ok"} 1.0' in body
    assert 'chatops_commands_total{command="/help",outcome="usage"} 1.0' in body
    assert "chatops_command_duration_seconds_bucket" in body
    assert "chatops_outbox_backlog" in body
    assert "chatops_outbox_send_failures_total" in body or "chatops_outbox_send_failures" in body
    assert "chatops_scheduler_lag_seconds" in body


async def test_readyz_is_503_when_the_database_is_unreachable(
    slack: FakeSlack, config: Config, db_target: DbTarget
) -> None:
    # A PostgreSQL URL where nothing listens stands for a database that went away.
    dead = Database.from_url("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    bot = BotApp(bot_settings(slack, db_target), config, db=dead)
    runtime = build_runtime(bot)
    runtime.bot.prepare_database = _no_migrations  # type: ignore[method-assign]
    await runtime.start("127.0.0.1", 0, workers=False)
    try:
        assert runtime.url
        status, body, _ = await get(runtime.url + "/readyz")
        assert status == 503 and "unreachable" in body
        assert (await get(runtime.url + "/healthz"))[0] == 200
    finally:
        await runtime.stop()


async def test_readyz_is_503_until_migrations_are_current(
    slack: FakeSlack, config: Config, db_target: DbTarget
) -> None:
    fresh = db_target.database()  # empty schema: never upgraded
    bot = BotApp(bot_settings(slack, db_target), config, db=fresh)
    runtime = build_runtime(bot)
    runtime.bot.prepare_database = _no_migrations  # type: ignore[method-assign]
    await runtime.start("127.0.0.1", 0, workers=False)
    try:
        assert runtime.url
        status, body, _ = await get(runtime.url + "/readyz")
        assert status == 503 and "migrations pending" in body
        await fresh.upgrade()
        assert (await get(runtime.url + "/readyz"))[0] == 200
    finally:
        await runtime.stop()


async def _no_migrations() -> None:
    return None
