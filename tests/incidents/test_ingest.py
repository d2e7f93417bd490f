"""Alertmanager notifications: authenticated, validated, stored once, processed."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from bot.core.models import AuditEntry, Job
from bot.incidents.ingest import PROCESS
from bot.incidents.models import AlertNotification
from tests.conftest import RunningBot
from tests.incidents.conftest import (
    alert,
    alerts,
    incident_command,
    incidents,
    notification,
    post,
    settled,
    timeline,
)


async def test_a_firing_group_opens_one_incident_with_a_thread(running_bot: RunningBot) -> None:
    rb = running_bot
    status, body = await post(rb, notification([alert(), alert(instance="b")]))
    assert (status, body) == (200, {"status": "stored"})
    await settled(rb)
    [inc] = await incidents(rb)
    assert (inc.ref, inc.severity, inc.status, inc.service) == (
        "INC-1",
        "SEV2",
        "Triggered",
        "checkout",
    )
    assert inc.title == "CheckoutErrors on checkout"
    assert inc.links["runbook"] == "https://runbooks.example.com/checkout-errors"
    assert inc.links["source"].startswith("http://prometheus.example.com")
    [msg] = rb.slack.messages("C0INCIDENTS")
    assert "INC-1 SEV2: CheckoutErrors on checkout" in str(msg.blocks)
    actions = [
        e.get("action_id")
        for b in msg.blocks or []
        if b["type"] == "actions"
        for e in b["elements"]
    ]
    assert actions[:2] == ["incident_ack", "incident_resolve"] and "incident_menu" in actions
    assert len(await alerts(rb)) == 2


async def test_the_same_payload_five_times_in_parallel_is_one_incident(
    running_bot: RunningBot,
) -> None:
    rb = running_bot
    body = notification([alert(), alert(instance="b")])
    results = await asyncio.gather(*(post(rb, body) for _ in range(5)))
    assert sorted(r[1]["status"] for r in results) == ["duplicate"] * 4 + ["stored"]
    assert all(r[0] == 200 for r in results)
    await settled(rb)
    assert len(await incidents(rb)) == 1
    assert len(rb.slack.calls("chat.postMessage")) == 1
    async with rb.bot.db.transaction() as s:
        assert len((await s.exec(select(AlertNotification))).all()) == 1


async def test_joins_resolutions_and_automatic_mitigation(running_bot: RunningBot) -> None:
    rb = running_bot
    a, b = alert(), alert(instance="b")
    await post(rb, notification([a]))
    await post(rb, notification([a, b]))  # b joins the group
    await settled(rb)
    await post(rb, notification([{**a, "status": "resolved"}, b]))
    await settled(rb)
    [inc] = await incidents(rb)
    assert inc.status == "Triggered"
    await post(rb, notification([{**a, "status": "resolved"}, {**b, "status": "resolved"}]))
    await settled(rb)
    [inc] = await incidents(rb)
    assert inc.status == "Mitigated" and inc.mitigated_at is not None
    kinds = [(e.kind, e.text.split(":")[0]) for e in await timeline(rb)]
    assert ("alert", "alert joined") in kinds and ("alert", "alert resolved") in kinds
    assert kinds[-1][0] == "status"
    thread = [m.text for m in rb.slack.messages("C0INCIDENTS") if m.thread_ts]
    assert any("INC-1 is Mitigated: every alert has resolved" in t for t in thread)


async def test_a_group_that_fires_again_after_resolution_is_a_new_incident(
    running_bot: RunningBot,
) -> None:
    rb = running_bot
    a = alert()
    await post(rb, notification([a]))
    await settled(rb)
    assert "resolved" in await incident_command(rb, "resolve INC-1 restarted the pods")
    await settled(rb)
    later = alert(started=datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    await post(rb, notification([later]))
    await settled(rb)
    first, second = await incidents(rb)
    assert first.status == "Resolved" and first.summary == "restarted the pods"
    assert second.status == "Triggered" and second.id == 2


async def test_sev4_only_posts(running_bot: RunningBot) -> None:
    rb = running_bot
    await post(
        rb,
        notification(
            [alert("DiskAlmostFull", severity="info")], group_key='{}:{alertname="DiskAlmostFull"}'
        ),
    )
    await settled(rb)
    assert await incidents(rb) == []
    [msg] = rb.slack.messages("C0INCIDENTS")
    assert "SEV4 firing: DiskAlmostFull on checkout" in msg.text


async def test_bad_requests_are_refused_and_nothing_is_stored(running_bot: RunningBot) -> None:
    rb = running_bot
    good = notification([alert()])
    assert (await post(rb, good, token=None))[0] == 401
    assert (await post(rb, good, token="wrong"))[0] == 401
    status, body = await post(rb, None, raw=b"{not json")
    assert status == 400 and "invalid JSON" in body["error"]
    status, body = await post(rb, {**good, "version": "3"})
    assert status == 400 and any(r.startswith("version") for r in body["reasons"])
    status, body = await post(rb, {k: v for k, v in good.items() if k != "groupKey"})
    assert status == 400 and any("groupKey" in r for r in body["reasons"])
    big = json.dumps(notification([alert(instance=str(i)) for i in range(3000)])).encode()
    assert len(big) > 1024 * 1024
    assert (await post(rb, None, raw=big))[0] == 413
    # Basic auth with the token as the password works too (Alertmanager's basic_auth).
    status, _ = await post(
        rb,
        {**good, "extra_field_from_a_newer_alertmanager": {"x": 1}},
        token=None,
        basic=("alertmanager", "test-webhook-token"),
    )
    assert status == 200
    await settled(rb)
    async with rb.bot.db.transaction() as s:
        assert len((await s.exec(select(AlertNotification))).all()) == 1
        assert (await s.exec(select(AuditEntry))).all() == []


async def test_notifications_of_a_group_apply_in_the_order_they_arrived(
    running_bot: RunningBot,
) -> None:
    """A stale snapshot processed late must not undo a newer one."""
    rb = running_bot
    a, b = alert(), alert(instance="b")
    await rb.bot.scheduler.stop()  # hold processing while three snapshots arrive
    for body in (notification([a, b]),
                 notification([{**a, "status": "resolved"}, b]),
                 notification([{**a, "status": "resolved"}, {**b, "status": "resolved"}])):
        assert (await post(rb, body))[0] == 200
    # Run the newest notification's job first: it must apply all three in order.
    async with rb.bot.db.transaction() as s:
        jobs = (await s.exec(select(Job).where(Job.kind == PROCESS))).all()
        for job in jobs:
            job.due_at = rb.bot.clock.now() + timedelta(hours=1)
            s.add(job)
        newest = max(jobs, key=lambda j: j.id or 0)
        newest.due_at = rb.bot.clock.now()
    rb.bot.scheduler.start()
    await settled(rb)
    [inc] = await incidents(rb)
    assert inc.status == "Mitigated"
    assert {x.status for x in await alerts(rb)} == {"resolved"}
