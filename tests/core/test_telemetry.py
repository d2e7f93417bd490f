"""Spans per command and per outbound call, carrying who and what."""

from __future__ import annotations

from typing import Any

from tests.conftest import RunningBot, eventually


async def test_command_and_delivery_spans(running_bot: RunningBot, spans: Any) -> None:
    rb = running_bot
    await rb.requests.command("/help", user="UBOB", channel="C0OPS")
    await rb.slack.wait_for("chat.postEphemeral")
    await eventually(lambda: any(s.name == "outbox deliver" for s in spans.get_finished_spans()))
    by_name = {s.name: s for s in spans.get_finished_spans()}
    command = by_name["command /help"]
    assert command.attributes["chatops.user"] == "UBOB"
    assert command.attributes["chatops.transport"] == "slack"
    assert command.attributes["chatops.outcome"] == "ok"
    assert by_name["outbox deliver"].attributes["chatops.outbox.kind"] == "ephemeral"
