"""The durable outbox delivering through the real slack-sdk client to the fake Slack."""

from __future__ import annotations

from sqlmodel import select

from bot.core.chat import Message
from bot.core.clock import SystemClock
from bot.core.db import Database
from bot.core.metrics import BotMetrics
from bot.core.models import OutboxKind, OutboxMessage, OutboxStatus
from bot.core.outbox import Outbox
from bot.core.outbox_sender import OutboxSender
from bot.slack.delivery import SlackDeliverer
from integrations.slack import SlackPoster
from tests.conftest import BOT_TOKEN, DbTarget, eventually
from tests.fakes.slack_api import FakeSlack


def sender_for(db: Database, slack: FakeSlack, name: str = "s1", *, rate: float = 20.0,
               burst: int = 3) -> OutboxSender:
    deliverer = SlackDeliverer(SlackPoster(BOT_TOKEN, slack.base_url))
    return OutboxSender(db, SystemClock(), BotMetrics(), deliverer, name, rate=rate,
                        burst=burst, poll_interval=0.02)


async def rows(db: Database) -> list[OutboxMessage]:
    async with db.transaction() as s:
        return list((await s.exec(select(OutboxMessage).order_by(OutboxMessage.id))).all())  # type: ignore[arg-type]


async def all_done(db: Database) -> bool:
    return all(r.status in (OutboxStatus.SENT, OutboxStatus.FAILED) for r in await rows(db))


async def post_many(db: Database, outbox: Outbox, channels: list[str], n: int) -> None:
    for i in range(n):
        async with db.transaction() as s:
            for ch in channels:
                await outbox.post(s, ch, Message(text=f"{ch} message {i}"))


def texts(slack: FakeSlack, channel: str) -> list[str]:
    return [c.body["text"] for c in slack.calls("chat.postMessage", ok=True)
            if c.body["channel"] == channel]


async def test_order_and_per_channel_rate(db: Database, slack: FakeSlack) -> None:
    outbox = Outbox(SystemClock())
    sender = sender_for(db, slack, rate=5.0, burst=2)
    await post_many(db, outbox, ["C1", "C2"], 8)
    sender.start()
    await eventually(lambda: all_done(db), timeout=20)
    await sender.stop()
    for ch in ("C1", "C2"):
        assert texts(slack, ch) == [f"{ch} message {i}" for i in range(8)]
        # GCRA: a burst of 2, then one every 0.2 s.
        assert slack.max_rate(ch, window=0.99) <= 5 + 2 - 1
        times = slack.per_channel_send_times()[ch]
        assert times[-1] - times[0] >= (8 - 2) * 0.2 * 0.9
    # Channels do not wait for each other: both finished in about the same time.
    t1, t2 = slack.per_channel_send_times()["C1"], slack.per_channel_send_times()["C2"]
    assert abs(t1[-1] - t2[-1]) < 0.5


async def test_429_then_5xx_everything_delivered_once_in_order(
    db: Database, slack: FakeSlack
) -> None:
    outbox = Outbox(SystemClock())
    sender = sender_for(db, slack, rate=10.0)
    slack.fail("chat.postMessage", 429, retry_after=2, times=1)
    await post_many(db, outbox, ["C1", "C2"], 5)
    sender.start()
    await eventually(lambda: len(slack.calls("chat.postMessage", ok=False)) >= 1)
    limited_at = slack.calls("chat.postMessage", ok=False)[0].time
    slack.fail("chat.postMessage", 503, times=4)
    await eventually(lambda: all_done(db), timeout=30)
    await sender.stop()
    for ch in ("C1", "C2"):
        assert texts(slack, ch) == [f"{ch} message {i}" for i in range(5)]
    assert len(slack.calls("chat.postMessage", ok=True)) == 10
    # Retry-After was honoured on the channel that was told to wait.
    throttled = slack.calls("chat.postMessage", ok=False)[0].body["channel"]
    first_ok = min(c.time for c in slack.calls("chat.postMessage", ok=True)
                   if c.body["channel"] == throttled)
    assert first_ok - limited_at >= 1.9
    assert all(r.status == OutboxStatus.SENT for r in await rows(db))


async def test_edits_coalesce_to_the_latest_content(db: Database, slack: FakeSlack) -> None:
    outbox = Outbox(SystemClock())
    async with db.transaction() as s:
        await outbox.post(s, "C1", Message(text="deploy: requested"), key="deploy-1")
    for state in ("configuring", "rolling out"):
        async with db.transaction() as s:
            await outbox.update(s, "deploy-1", Message(text=f"deploy: {state}"))
    sender = sender_for(db, slack)
    sender.start()
    await eventually(lambda: all_done(db))
    # Not sent yet when edited: one post, with the latest content, and no update.
    assert texts(slack, "C1") == ["deploy: rolling out"]
    assert slack.calls("chat.update") == []
    # Once posted, edits queued while Slack is failing collapse into one update.
    # Edits queued while nothing is being sent collapse into one update, which
    # is retried after Slack fails it. (An edit that arrives while an update
    # is in flight is queued behind it, by design, so the sender is stopped
    # while the test writes.)
    await sender.stop()
    slack.fail("chat.update", 500, times=1)
    for state in ("health gating", "promoting", "completed"):
        async with db.transaction() as s:
            await outbox.update(s, "deploy-1", Message(text=f"deploy: {state}"))
    sender = sender_for(db, slack)
    sender.start()
    await eventually(lambda: len(slack.calls("chat.update", ok=True)) == 1)
    await eventually(lambda: all_done(db))
    await sender.stop()
    updates = slack.calls("chat.update", ok=True)
    assert len(updates) == 1 and updates[0].body["text"] == "deploy: completed"
    [msg] = slack.messages("C1")
    assert msg.text == "deploy: completed"
    assert len(slack.calls("chat.update")) == 2  # the failure, then the coalesced edit


async def test_thread_replies_find_their_parent(db: Database, slack: FakeSlack) -> None:
    outbox = Outbox(SystemClock())
    async with db.transaction() as s:
        await outbox.post(s, "C1", Message(text="INC-1 opened"), key="INC-1")
        await outbox.post(s, "ignored", Message(text="first update"), thread_key="INC-1")
    sender = sender_for(db, slack)
    sender.start()
    await eventually(lambda: all_done(db))
    await sender.stop()
    parent, reply = slack.calls("chat.postMessage", ok=True)
    assert reply.body["channel"] == "C1"
    assert reply.body["thread_ts"] == parent.response["ts"]


async def test_permanent_errors_do_not_block_the_channel(db: Database, slack: FakeSlack) -> None:
    outbox = Outbox(SystemClock())
    slack.error("chat.postMessage", "msg_too_long", times=1)
    await post_many(db, outbox, ["C1"], 3)
    sender = sender_for(db, slack)
    sender.start()
    await eventually(lambda: all_done(db))
    await sender.stop()
    statuses = [r.status for r in await rows(db)]
    assert statuses == [OutboxStatus.FAILED, OutboxStatus.SENT, OutboxStatus.SENT]
    assert texts(slack, "C1") == ["C1 message 1", "C1 message 2"]


async def test_a_message_in_doubt_after_a_crash_is_not_sent_twice(
    db: Database, slack: FakeSlack
) -> None:
    """A process died after Slack accepted a post but before recording it."""
    outbox = Outbox(SystemClock())
    await post_many(db, outbox, ["C1"], 2)
    first, _second = await rows(db)
    # Reproduce the crash: the first post reached Slack (with its outbox id as
    # metadata), the second never left; both rows say "sending".
    poster = SlackPoster(BOT_TOKEN, slack.base_url)
    await poster.post_message("C1", "C1 message 0", outbox_id=first.id)
    async with db.transaction() as s:
        for row in (await s.exec(select(OutboxMessage))).all():
            row.status = OutboxStatus.SENDING
            s.add(row)
    slack.clear()
    sender = sender_for(db, slack)
    sender.start()
    await eventually(lambda: all_done(db))
    await sender.stop()
    assert texts(slack, "C1") == ["C1 message 1"]
    assert [m.text for m in slack.messages("C1")] == ["C1 message 0", "C1 message 1"]
    assert len(slack.calls("conversations.history")) == 2
    assert all(r.status == OutboxStatus.SENT and r.ts for r in await rows(db))


async def test_two_senders_on_one_database_deliver_each_message_once(
    db_target: DbTarget, db: Database, slack: FakeSlack
) -> None:
    outbox = Outbox(SystemClock())
    channels = [f"C{i}" for i in range(6)]
    await post_many(db, outbox, channels, 6)
    other_db = db_target.database()
    senders = [sender_for(db, slack, "s1", rate=50), sender_for(other_db, slack, "s2", rate=50)]
    for s in senders:
        s.start()
    await eventually(lambda: all_done(db), timeout=30)
    for s in senders:
        await s.stop()
    await other_db.dispose()
    for ch in channels:
        assert texts(slack, ch) == [f"{ch} message {i}" for i in range(6)]


async def test_ephemeral_and_response_url_lanes(db: Database, slack: FakeSlack) -> None:
    outbox = Outbox(SystemClock())
    url = slack.response_url("r1")
    async with db.transaction() as s:
        await outbox.ephemeral(s, "C1", "UALICE", Message(text="only you"))
        await outbox.respond(s, url, Message(text="answer"), channel="C1", user="UALICE",
                             ephemeral=False)
    sender = sender_for(db, slack)
    sender.start()
    await eventually(lambda: all_done(db))
    await sender.stop()
    [eph] = slack.calls("chat.postEphemeral")
    assert eph.body["user"] == "UALICE" and eph.body["text"] == "only you"
    [resp] = slack.calls("response_url")
    assert resp.body["response_type"] == "in_channel" and resp.body["text"] == "answer"
    kinds = {r.kind for r in await rows(db)}
    assert kinds == {OutboxKind.EPHEMERAL, OutboxKind.RESPOND}


async def test_a_retry_waits_its_backoff_without_reordering(db: Database, slack: FakeSlack) -> None:
    outbox = Outbox(SystemClock())
    slack.fail("chat.postMessage", 500, times=1)
    await post_many(db, outbox, ["C1"], 3)
    sender = sender_for(db, slack)
    sender.start()
    await eventually(lambda: all_done(db), timeout=10)
    await sender.stop()
    assert texts(slack, "C1") == ["C1 message 0", "C1 message 1", "C1 message 2"]
    failed = slack.calls("chat.postMessage", ok=False)[0]
    first_ok = slack.calls("chat.postMessage", ok=True)[0]
    assert first_ok.time - failed.time >= 0.7  # backoff of ~1 s (jittered)


class _EditsWhileClaiming(OutboxSender):
    """Commits an edit at the moment the sender takes the row, the way a
    command's transaction can land between the sender's own statements."""

    outbox: Outbox
    edited = False

    async def _mark_sending(self, outbox_id: int) -> bool:
        if not self.edited:
            self.edited = True
            async with self.db.transaction() as s:
                await self.outbox.update(s, "inc-1", Message(text="INC-1 Resolved"))
        return await super()._mark_sending(outbox_id)


async def test_an_edit_landing_as_the_sender_takes_the_row_is_not_lost(
    db: Database, slack: FakeSlack
) -> None:
    outbox = Outbox(SystemClock())
    async with db.transaction() as s:
        await outbox.post(s, "C1", Message(text="INC-1 Mitigated"), key="inc-1")
    deliverer = SlackDeliverer(SlackPoster(BOT_TOKEN, slack.base_url))
    sender = _EditsWhileClaiming(db, SystemClock(), BotMetrics(), deliverer, "s1",
                                 poll_interval=0.02)
    sender.outbox = outbox
    sender.start()
    await eventually(lambda: all_done(db))
    await sender.stop()
    assert sender.edited
    [msg] = slack.messages("C1")
    assert msg.text == "INC-1 Resolved"
