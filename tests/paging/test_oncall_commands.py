"""/oncall, overrides, /page with its Ack flow, and the external pager."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bot.core.config import Config, ExternalPager
from integrations.pager_webhook import body_for
from tests.conftest import eventually
from tests.incidents.conftest import alert, notification, post
from tests.paging.conftest import PagingBot, paging_config


async def say(b: PagingBot, command: str, text: str, user: str = "UALICE") -> str:
    name = f"r{len(b.slack.calls())}"
    await b.requests.command(command, text, user=user, response_url=b.slack.response_url(name))
    [call] = await b.slack.wait_for("response_url", lambda c: c.name == name)
    return str(call.body["text"])


async def test_who_is_on_call_schedules_and_overrides(paging_bot: PagingBot) -> None:
    b = paging_bot
    b.slack.add_user("UDAN", "dan", tz="America/New_York")
    answer = await say(b, "/oncall", "", user="UDAN")
    assert "*checkout-oncall* (Europe/Berlin)" in answer
    assert "primary: <@UALICE>" in answer and "secondary: <@UBOB>" in answer
    answer = await say(b, "/oncall", "schedule checkout-oncall days=2")
    assert answer.count("<@UALICE>") >= 1 and "_secondary_" in answer
    answer = await say(b, "/oncall", "override checkout-oncall <@UCAROL> for 4h")
    assert answer.startswith("Override #1: <@UCAROL> covers checkout-oncall from")
    answer = await say(b, "/oncall", "checkout-oncall", user="UDAN")
    assert "primary: <@UCAROL> (override); next <@UALICE> at" in answer
    # The next hand-off in the schedule's zone and in the asker's own.
    # (The zone abbreviations follow daylight saving time on the real date.)
    assert re.search(r" CES?T \(", answer) and re.search(r" E[SD]T your time\)", answer), answer
    assert "#1 checkout-oncall: <@UCAROL>" in await say(b, "/oncall", "overrides")
    # An alert now pages the override, not the regular on-call person.
    await post(b, notification([alert(severity="page")]))
    await b.slack.wait_for("chat.postMessage", lambda c: c.ok and c.body["channel"] == "UCAROL")
    assert await say(b, "/oncall", "override remove 1") == "Removed override #1."
    assert "primary: <@UALICE>" in await say(b, "/oncall", "")
    assert "is not a person" in await say(b, "/oncall", "override checkout-oncall bob for 1h")
    assert "There is no schedule 'nope'" in await say(b, "/oncall", "nope")
    assert "'whenever' is not a window" in await say(
        b, "/oncall", "override checkout-oncall <@UBOB> whenever"
    )


async def test_page_by_hand_and_ack(paging_bot: PagingBot) -> None:
    b = paging_bot
    answer = await say(b, "/page", "checkout-oncall the checkout queue is backing up", "UBOB")
    assert answer == "Paged <@UALICE> (page #1)."
    [dm] = await b.slack.wait_for(
        "chat.postMessage", lambda c: c.ok and c.body["channel"] == "UALICE"
    )
    assert "Page from <@UBOB>: the checkout queue is backing up" in dm.body["text"]
    assert await say(b, "/page", "ack", "UALICE") == "Acknowledged page #1."
    await b.slack.wait_for(
        "chat.postMessage",
        lambda c: (
            c.ok and c.body["channel"] == "UBOB" and "acknowledged your page #1" in c.body["text"]
        ),
    )
    assert "no page to acknowledge" in await say(b, "/page", "ack", "UALICE")


def test_pagerduty_events_v2_body() -> None:
    body = body_for(
        "pagerduty",
        incident="INC-7",
        severity="SEV1",
        summary="INC-7 SEV1: down",
        ack_url="https://chatops.example.com/api/v1/incidents/INC-7",
        token="routing-key",
    )
    assert body == {
        "routing_key": "routing-key",
        "event_action": "trigger",
        "dedup_key": "INC-7",
        "payload": {"summary": "INC-7 SEV1: down", "source": "chatops-bot", "severity": "critical"},
        "links": [
            {"href": "https://chatops.example.com/api/v1/incidents/INC-7", "text": "Acknowledge"}
        ],
    }


@pytest.fixture
async def sink() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    failures = [1]  # the first call fails: the scheduler must retry

    async def hook(request: web.Request) -> web.Response:
        received.append(
            {"auth": request.headers.get("Authorization"), "body": await request.json()}
        )
        if failures[0]:
            failures[0] -= 1
            return web.Response(status=503)
        return web.json_response({"status": "queued"})

    app = web.Application()
    app.router.add_post("/page", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/page", received
    finally:
        await runner.cleanup()


@pytest.fixture
def config(sink: tuple[str, list[dict[str, Any]]]) -> Config:
    base = paging_config()
    oncall = base.oncall.model_copy(
        update={"pagers": [ExternalPager(user="UALICE", url=sink[0], token="gateway-secret")]}
    )
    return base.model_copy(update={"oncall": oncall})


async def test_external_pager_gets_a_copy_and_is_retried(
    paging_bot: PagingBot,
    sink: tuple[str, list[dict[str, Any]]],
) -> None:
    _url, received = sink
    await post(paging_bot, notification([alert(severity="page")]))
    await eventually(lambda: len(received) >= 2, timeout=15)
    first, second = received[:2]
    assert first["auth"] == "Bearer gateway-secret"
    assert second["body"] == first["body"]
    assert second["body"]["incident"] == "INC-1" and second["body"]["severity"] == "SEV1"
    assert "CheckoutErrors" in second["body"]["summary"]
