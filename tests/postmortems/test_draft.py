"""A SEV2 incident from an alert, acknowledged, updated, with a rollback during
it, resolved: the bot drafts its postmortem by itself, with each of those
at the right time and the four response durations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlmodel import col, select

from bot.core.models import Job
from bot.incidents.models import Alert, Incident
from tests.conftest import eventually
from tests.deploys.conftest import DeployBot
from tests.incidents.conftest import alert, notification, post
from tests.postmortems.conftest import postmortem


async def test_sev2_resolved_gets_a_complete_draft(deploy_bot: DeployBot) -> None:
    b = deploy_bot
    await b.say("/deploy", "cart v2-bad to staging", user="UCAROL")
    bad = await b.latest()
    await b.wait_state(bad.id or 0, "Completed", timeout=40)

    began = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    firing = alert("CartErrors", service="cart", severity="critical", started=began)
    status, _ = await post(b, notification([firing], group_key='{}:{alertname="CartErrors"}'))
    assert status == 200
    await eventually(lambda: _incident(b), timeout=10)

    assert "Acknowledged INC-1" in await b.say("/incident", "ack INC-1", user="UCAROL")
    await b.say("/incident", "update INC-1 Errors since the 2-bad deploy; rolling back", "UCAROL")
    said = await b.say("/rollback", "cart in staging", user="UCAROL")
    rollback = await b.latest()
    assert rollback.kind == "rollback", said
    await b.wait_state(rollback.id or 0, "RolledBack", timeout=40)
    await b.say("/incident", "resolve INC-1 Rolled back to v1", user="UCAROL")

    async def drafted() -> bool:
        try:
            await postmortem(b.bot.db)
            return True
        except Exception:
            return False

    await eventually(drafted, timeout=10)
    pm, items = await postmortem(b.bot.db)
    inc = await _incident(b)
    assert inc is not None and inc.severity == "SEV2"
    assert inc.acknowledged_at and inc.resolved_at
    s = pm.sections
    assert pm.created_by == "chatops" and items == []

    # The four durations, to the second, from the incident's own record.
    metrics = s["metrics"]
    assert inc.detected_at == began  # the problem began when the alert did
    [heard] = await _alerts(b)
    assert metrics["detect"] == (heard.first_seen - began).total_seconds() >= 180
    assert metrics["acknowledge"] == (inc.acknowledged_at - began).total_seconds()
    assert metrics["resolve"] == (inc.resolved_at - began).total_seconds()
    # Resolving without a mitigation step counts as mitigated then.
    assert inc.mitigated_at == inc.resolved_at
    assert metrics["mitigate"] == metrics["resolve"]

    rows = s["timeline"]
    kinds = [r["kind"] for r in rows]
    for kind in ("status", "update", "deploy"):
        assert kind in kinds, kinds
    by_text = {r["text"]: datetime.fromisoformat(r["at"]) for r in rows}
    [ack_at] = [at for t, at in by_text.items() if "→ Acknowledged" in t]
    assert ack_at == inc.acknowledged_at
    [resolved_at] = [at for t, at in by_text.items() if "→ Resolved" in t]
    assert resolved_at == inc.resolved_at
    [update] = [r for r in rows if r["kind"] == "update"]
    assert "rolling back" in update["text"] and update["actor"] == "UCAROL"
    [deploy] = [r for r in rows if r["kind"] == "deploy"]
    assert f"Rollback #{rollback.id} of cart" in deploy["text"]
    assert inc.acknowledged_at <= datetime.fromisoformat(deploy["at"]) <= inc.resolved_at
    assert rows == sorted(rows, key=lambda r: r["at"])

    assert "Alert CartErrors fired at" in s["detection"]
    assert s["impact"].startswith("cart, SEV2, for ")
    assert "Rolled back to v1" in s["summary"]
    assert "To write" in s["contributing_factors"]  # placeholders for people

    # Posted in the incident's thread, and the commander will be reminded.
    await b.delivered()
    posted = [
        c for c in b.slack.calls("chat.postMessage", ok=True) if "Postmortem:" in c.body["text"]
    ]
    assert posted and posted[0].body.get("thread_ts")
    [reminder] = await b.slack.wait_for(
        "chat.postMessage", lambda c: c.ok and "is still a draft" in c.body["text"], timeout=10
    )
    assert "INC-1" in reminder.body["text"]

    async def reminder_jobs() -> list[str]:
        async with b.bot.db.transaction() as session:
            jobs = await session.exec(select(Job).where(col(Job.kind) == "postmortem.remind"))
            return [j.status for j in jobs.all()]

    # No Jira here: it can never be published, so one reminder and no more.
    await eventually(lambda: _is(reminder_jobs, ["done"]), timeout=5)


async def _is(read: Callable[[], Awaitable[list[str]]], expected: list[str]) -> bool:
    return await read() == expected


async def _alerts(b: DeployBot) -> list[Alert]:
    async with b.bot.db.transaction() as s:
        return list((await s.exec(select(Alert))).all())


async def _incident(b: DeployBot) -> Incident | None:
    async with b.bot.db.transaction() as s:
        return (await s.exec(select(Incident))).first()
