"""Socket Mode: with SLACK_APP_TOKEN set the bot connects out over a WebSocket
(no public URL), receives envelopes, acks them, and answers as in HTTP mode."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.app import BotApp
from bot.core.config import Config
from bot.core.db import Database
from bot.runtime import Runtime, build_runtime
from tests.conftest import DbTarget, bot_settings
from tests.fakes.slack_api import FakeSlack


@pytest.fixture
async def socket_bot(db: Database, db_target: DbTarget, slack: FakeSlack,
                     config: Config) -> AsyncIterator[Runtime]:
    settings = bot_settings(slack, db_target, SLACK_APP_TOKEN="xapp-1-test-app-token")
    runtime = build_runtime(BotApp(settings, config, db=db, outbox_rate=20.0))
    await runtime.start(None, workers=True)
    try:
        yield runtime
    finally:
        await runtime.stop()


async def test_slash_command_over_socket_mode(socket_bot: Runtime, slack: FakeSlack) -> None:
    assert socket_bot.socket_mode
    ack = await slack.socket_mode.send("slash_commands", {
        "command": "/help", "text": "", "user_id": "UBOB", "channel_id": "C0OPS",
        "team_id": "T0000FAKE", "response_url": slack.response_url("sm"),
        "trigger_id": "t.1"})
    assert ack["envelope_id"].startswith("env-")
    [reply] = await slack.wait_for("response_url", lambda c: c.name == "sm")
    assert "/help" in reply.body["text"]
    assert slack.socket_mode.opened_with == ["xapp-1-test-app-token"]


async def test_button_over_socket_mode(socket_bot: Runtime, slack: FakeSlack) -> None:
    await slack.socket_mode.send("interactive", {
        "type": "block_actions", "user": {"id": "UBOB"}, "channel": {"id": "C0OPS"},
        "container": {"message_ts": "1.2", "channel_id": "C0OPS"},
        "response_url": slack.response_url("btn"), "trigger_id": "t.2",
        "team": {"id": "T0000FAKE"}, "api_app_id": "A0CHATOPS",
        "actions": [{"action_id": "gone", "value": "1", "type": "button",
                     "action_ts": "1.3", "block_id": "b"}]})
    [reply] = await slack.wait_for("response_url", lambda c: c.name == "btn")
    assert "no longer handled" in reply.body["text"]
