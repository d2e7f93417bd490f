"""Slack's HTTP endpoint as Slack reaches it: signed form posts to /slack/events."""

from __future__ import annotations

import time

from sqlalchemy import func
from sqlmodel import select

from bot.core.models import AuditEntry, OutboxMessage
from tests.conftest import RunningBot, eventually


async def _count(rb: RunningBot, model: type) -> int:
    async with rb.bot.db.transaction() as s:
        return int((await s.exec(select(func.count()).select_from(model))).one())


async def test_signed_help_is_acked_fast_and_answered_through_response_url(
    running_bot: RunningBot,
) -> None:
    rb = running_bot
    url = rb.slack.response_url("help-1")
    result = await rb.requests.command("/help", response_url=url)
    assert result.status == 200
    assert result.elapsed < 1.0, f"ack took {result.elapsed:.3f}s"
    [call] = await rb.slack.wait_for("response_url", lambda c: c.name == "help-1")
    assert call.body["response_type"] == "ephemeral"
    assert "/help" in call.body["text"]
    assert any(b["type"] == "section" for b in call.body["blocks"])


async def test_reply_without_response_url_goes_out_as_ephemeral(running_bot: RunningBot) -> None:
    rb = running_bot
    assert (await rb.requests.command("/help", user="UBOB", channel="C0OPS")).status == 200
    [call] = await rb.slack.wait_for("chat.postEphemeral")
    assert call.body["user"] == "UBOB"
    assert call.body["channel"] == "C0OPS"
    assert call.token == "xoxb-test-bot-token"


async def test_unknown_command_and_bad_arguments_get_usage_not_a_traceback(
    running_bot: RunningBot,
) -> None:
    rb = running_bot
    await rb.requests.command("/frobnicate", "now", response_url=rb.slack.response_url("u1"))
    await rb.requests.command("/help", "a b c", response_url=rb.slack.response_url("u2"))
    [unknown] = await rb.slack.wait_for("response_url", lambda c: c.name == "u1")
    [bad] = await rb.slack.wait_for("response_url", lambda c: c.name == "u2")
    assert "don't know the command /frobnicate" in unknown.body["text"]
    assert "Usage" in bad.body["text"] and "/help [<command>]" in bad.body["text"]
    assert "Traceback" not in unknown.body["text"] + bad.body["text"]


async def test_bad_signatures_are_rejected_and_nothing_reaches_the_bot(
    running_bot: RunningBot,
) -> None:
    rb = running_bot
    body = rb.requests.command_body("/help", response_url=rb.slack.response_url("forged"))
    form = "application/x-www-form-urlencoded"
    forged = {"X-Slack-Request-Timestamp": str(int(time.time())),
              "X-Slack-Signature": "v0=" + "0" * 64}
    old = rb.requests.sign(body, timestamp=int(time.time()) - 6 * 60)
    results = [
        await rb.requests.post(body, form, sign=False, headers=forged),
        await rb.requests.post(body, form, sign=False, headers=old),
        await rb.requests.post(body, form, sign=False),
        # A valid signature over a different body.
        await rb.requests.post(body, form, sign=False,
                               headers=rb.requests.sign(body.replace("help", "hel"))),
    ]
    assert [r.status for r in results] == [401, 401, 401, 401]
    # A good request afterwards proves the bot was listening all along.
    await rb.requests.command("/help", response_url=rb.slack.response_url("good"))
    await rb.slack.wait_for("response_url", lambda c: c.name == "good")
    assert [c.name for c in rb.slack.calls("response_url")] == ["good"]
    assert await _count(rb, AuditEntry) == 0
    assert await _count(rb, OutboxMessage) == 1
    samples = next(iter(rb.bot.metrics.commands.collect())).samples
    handled = sum(s.value for s in samples if s.name.endswith("_total"))
    assert handled == 1


async def test_button_for_an_unknown_action_is_answered(running_bot: RunningBot) -> None:
    rb = running_bot
    result = await rb.requests.action("no_such_action", "x",
                                      response_url=rb.slack.response_url("btn"))
    assert result.status == 200
    [call] = await rb.slack.wait_for("response_url", lambda c: c.name == "btn")
    assert "no longer handled" in call.body["text"]


async def test_outbox_row_is_marked_sent_with_ts(running_bot: RunningBot) -> None:
    rb = running_bot
    await rb.requests.command("/help", user="UBOB", channel="C0OPS")
    await rb.slack.wait_for("chat.postEphemeral")

    async def sent() -> bool:
        async with rb.bot.db.transaction() as s:
            row = (await s.exec(select(OutboxMessage))).one()
            return row.status == "sent"

    await eventually(sent)
