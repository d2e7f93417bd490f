"""An alert storm: 10,000 alerts in 200 groups, all at once."""

from __future__ import annotations

import asyncio

from sqlalchemy import func
from sqlmodel import select

from bot.incidents.models import Alert, Incident
from tests.conftest import RunningBot
from tests.incidents.conftest import alert, notification, post, settled

GROUPS, PER_GROUP = 200, 50


def storm() -> list[dict[str, object]]:
    return [
        notification([alert(f"Storm{g}", instance=f"i{i}", service="cart")
                      for i in range(PER_GROUP)],
                     group_key=f'{{}}:{{alertname="Storm{g}"}}')
        for g in range(GROUPS)
    ]


async def test_a_storm_opens_one_incident_per_group_and_loses_no_alert(
    running_bot: RunningBot,
) -> None:
    rb = running_bot
    bodies = storm()
    semaphore = asyncio.Semaphore(50)

    async def send(body: dict[str, object]) -> int:
        async with semaphore:
            return (await post(rb, body))[0]

    statuses = await asyncio.gather(*(send(b) for b in bodies))
    assert set(statuses) == {200}
    await settled(rb, timeout=120)
    async with rb.bot.db.transaction() as s:
        incidents = (await s.exec(select(func.count()).select_from(Incident))).one()
        stored = set((await s.exec(select(Alert.fingerprint))).all())
    assert incidents == GROUPS
    sent = {a["fingerprint"] for b in bodies for a in b["alerts"]}  # type: ignore[attr-defined]
    assert len(sent) == GROUPS * PER_GROUP and stored == sent
    # Slack saw one home message per incident, within the channel's rate
    # (20/s with a burst of 3 in this fixture), not one message per alert.
    posts = rb.slack.calls("chat.postMessage", ok=True)
    assert len([c for c in posts if not c.body.get("thread_ts")]) == GROUPS
    assert len(posts) < GROUPS * 2
    assert rb.slack.max_rate("C0INCIDENTS", window=0.99) <= 20 + 3
