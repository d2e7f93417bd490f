"""Running an incident from Slack: signed commands, buttons, pins and deploy
events fill the timeline, and the JSON API says the same thing."""

from __future__ import annotations

from typing import Any

import aiohttp
from sqlmodel import select

from bot.core.events import DeployFinished
from bot.core.models import AuditEntry
from tests.conftest import RunningBot, eventually
from tests.incidents.conftest import (
    TOKEN,
    alert,
    incident_command,
    incidents,
    notification,
    post,
    settled,
    timeline,
)


async def say(rb: RunningBot, text: str, user: str = "UALICE") -> str:
    return await incident_command(rb, text, user)


async def api(rb: RunningBot, path: str, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(rb.url + path, headers=headers) as r:
        return r.status, await r.json()


async def test_lifecycle_through_slack_with_a_complete_timeline(running_bot: RunningBot) -> None:
    rb = running_bot
    await post(rb, notification([alert()]))
    await settled(rb)
    home = rb.slack.messages("C0INCIDENTS")[0]
    # Buttons on the incident message.
    await rb.requests.action("incident_ack", "1", user="UBOB", channel="C0INCIDENTS",
                             message_ts=home.ts, response_url=rb.slack.response_url("ack"))
    await rb.slack.wait_for("response_url", lambda c: c.name == "ack")
    await rb.requests.action("incident_menu", "1:bogus", user="UCAROL", channel="C0INCIDENTS")
    assert "not known" in await _last_ephemeral_or_response(rb)
    await rb.requests.command("/incident", "", user="UBOB")  # no subcommand: usage
    assert "SEV1" in await say(rb, "sev 1 INC-1")
    assert "<@UCAROL> commands INC-1" in await say(rb, "commander <@UCAROL|carol> INC-1")
    assert "Update posted" in await say(rb, "update INC-1 rolled back checkout, watching")
    # A human message pinned in the thread joins the timeline (Slack retries: once).
    # (The bot's own notes may still be arriving in the thread: pin this one.)
    pinned = rb.slack.add_message("C0INCIDENTS", "DB failover finished at 10:42", user="UBOB",
                                  thread_ts=home.ts)
    event = {"type": "reaction_added", "user": "UBOB", "reaction": "pushpin",
             "item": {"type": "message", "channel": "C0INCIDENTS", "ts": pinned.ts},
             "event_ts": pinned.ts}
    assert (await rb.requests.event(event, event_id="Ev1")).status == 200
    assert (await rb.requests.event(event, event_id="Ev1", retry_num=1)).status == 200

    async def pinned_once() -> bool:
        return [e.kind for e in await timeline(rb)].count("pin") == 1

    await eventually(pinned_once)
    # A deploy of the service during the incident (an event, not a cross-import).
    async with rb.bot.db.transaction() as s:
        await rb.bot.events.emit(s, DeployFinished(7, "rollback", "checkout", "staging", "v1",
                                                   "v2", "RolledBack", "UBOB",
                                                   rb.bot.clock.now()))
    assert "mitigated" in await say(rb, "mitigate INC-1")
    assert "resolved" in await say(rb, "resolve INC-1 bad deploy of v2; rolled back")
    await settled(rb)
    kinds = [e.kind for e in await timeline(rb)]
    assert kinds.count("pin") == 1
    for kind in ("status", "severity", "commander", "update", "pin", "deploy"):
        assert kind in kinds, kind
    [inc] = await incidents(rb)
    assert (inc.status, inc.severity, inc.commander) == ("Resolved", "SEV1", "UCAROL")
    assert inc.acknowledged_by == "UBOB" and inc.acknowledged_at and inc.resolved_at
    assert inc.summary == "bad deploy of v2; rolled back"
    # The API tells the same story.
    status, body = await api(rb, "/api/v1/incidents/INC-1")
    assert status == 200 and body["status"] == "Resolved" and body["commander"] == "UCAROL"
    assert [e["kind"] for e in body["timeline"]] == kinds
    status, listing = await api(rb, "/api/v1/incidents?status=open")
    assert status == 200 and listing["incidents"] == []
    assert (await api(rb, "/api/v1/incidents", token=None))[0] == 401
    assert (await api(rb, "/api/v1/incidents/INC-99"))[0] == 404
    # /incident timeline in chat, and the audit trail.
    text = await say(rb, "timeline INC-1")
    assert "Timeline of INC-1" in text and "DB failover finished" in text
    async with rb.bot.db.transaction() as s:
        actions = [a.action for a in (await s.exec(select(AuditEntry))).all()]
    for action in ("incident.ack", "incident.severity", "incident.commander",
                   "incident.update", "incident.mitigate", "incident.resolve"):
        assert action in actions
    # The home message was edited in place to its final state.
    home = rb.slack.messages("C0INCIDENTS")[0]
    assert "Resolved" in home.text and home.edits


async def test_declare_list_show_and_mistakes(running_bot: RunningBot) -> None:
    rb = running_bot
    answer = await say(rb, "declare Checkout is slow for EU users sev=2 service=checkout")
    assert answer == "Declared INC-1 (SEV2): Checkout is slow for EU users. You are its commander."
    assert "INC-1 SEV2 Declared: Checkout is slow for EU users (checkout)" in await say(rb, "list")
    assert "INC-1 SEV2 Declared" in await say(rb, "show INC-1")
    assert "Which incident?" in await say(rb, "ack")
    assert "There is no INC-42" in await say(rb, "ack INC-42")
    assert "is not a severity" in await say(rb, "sev 9 INC-1")
    assert "is not a person" in await say(rb, "commander bob INC-1")
    assert "There is no service 'payments'" in await say(rb, "declare x service=payments")
    assert "nothing to acknowledge" not in await say(rb, "ack INC-1")
    assert "nothing to acknowledge" in await say(rb, "ack INC-1")


async def _last_ephemeral_or_response(rb: RunningBot) -> str:
    call = (await rb.slack.wait_for("chat.postEphemeral"))[-1]
    return str(call.body["text"])
