"""Configurable incident policies: a channel per incident, automatic
resolution after a quiet period, re-opening instead of a new incident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.core.config import Config
from bot.core.config_loader import load_config
from tests.conftest import DATA, RunningBot, eventually
from tests.incidents.conftest import alert, incidents, notification, post, settled, timeline


@pytest.fixture
def config() -> Config:
    base = load_config(DATA / "config.yaml", env={})
    alerts = base.alerts.model_copy(update={
        "dedicated_channels": True, "auto_resolve_after": timedelta(seconds=1),
        "reopen_within": timedelta(hours=1)})
    return base.model_copy(update={"alerts": alerts})


async def test_channel_auto_resolve_and_reopen(running_bot: RunningBot) -> None:
    rb = running_bot
    a = alert()
    await post(rb, notification([a]))
    await settled(rb)

    async def has_channel() -> bool:
        [inc] = await incidents(rb)
        return inc.dedicated_channel is not None

    await eventually(has_channel)
    [create] = rb.slack.calls("conversations.create")
    assert create.body["name"] == "inc-1-checkouterrors-on-checkout"
    [inc] = await incidents(rb)
    await settled(rb)
    assert any("This channel is for INC-1" in m.text
               for m in rb.slack.messages(inc.dedicated_channel))
    # Commands in the incident's own channel need no INC-n.
    name = "in-channel"
    await rb.requests.command("/incident", "ack", user="UBOB", channel=inc.dedicated_channel or "",
                              response_url=rb.slack.response_url(name))
    [said] = await rb.slack.wait_for("response_url", lambda c: c.name == name)
    assert said.body["text"] == "Acknowledged INC-1."
    # Every alert resolves → Mitigated; a quiet second later → Resolved by itself.
    await post(rb, notification([{**a, "status": "resolved"}]))

    async def resolved() -> bool:
        [inc] = await incidents(rb)
        return inc.status == "Resolved"

    await eventually(resolved, timeout=10)
    # The same group firing again (a new startsAt) within reopen_within re-opens INC-1.
    await post(rb, notification([alert(started=datetime(2026, 11, 23, 11, 0, tzinfo=UTC))]))
    await settled(rb)
    [inc] = await incidents(rb)
    assert inc.status == "Triggered"
    texts = [e.text for e in await timeline(rb)]
    assert any("resolved automatically" in t for t in texts)
    assert any("its alerts fire again" in t for t in texts)
