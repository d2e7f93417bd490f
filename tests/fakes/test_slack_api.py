"""FakeSlack driven by the real slack-sdk clients, so the fake is checked against the
encodings, errors and retry handlers the bot actually uses."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections.abc import AsyncIterator

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from .slack_api import FakeSlack

TS = re.compile(r"^\d{10}\.\d{6}$")


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token="xoxb-test", base_url=slack.base_url)


async def test_base_url_and_auth_test(slack: FakeSlack, client: AsyncWebClient) -> None:
    assert slack.base_url.endswith("/api/") and slack.base_url.startswith(slack.url)
    resp = await client.auth_test()
    assert resp["team_id"] == "T0000FAKE" and resp["user_id"] == "U0000BOT"
    assert resp["bot_id"] == "B0000BOT" and resp["url"].startswith("https://")
    [call] = slack.calls("auth.test")
    assert call.ok and call.token == "xoxb-test"
    assert call.headers["authorization"] == "Bearer xoxb-test"  # case-insensitive


async def test_post_update_history_round_trip_with_metadata(
    slack: FakeSlack, client: AsyncWebClient,
) -> None:
    meta = {"event_type": "deploy_started", "event_payload": {"service": "api", "id": 7}}
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*deploying*"}}]
    first = await client.chat_postMessage(channel="C1", text="deploying", blocks=blocks,
                                          metadata=meta)
    second = await client.chat_postMessage(channel="C1", text="other")
    assert first["channel"] == "C1" and TS.match(first["ts"])
    assert first["message"]["text"] == "deploying" and first["message"]["bot_id"] == "B0000BOT"
    assert (int(first["ts"].replace(".", "")) < int(second["ts"].replace(".", "")))

    upd = await client.chat_update(channel="C1", ts=first["ts"], text="deployed")
    assert (upd["channel"], upd["ts"], upd["text"]) == ("C1", first["ts"], "deployed")

    hist = await client.conversations_history(channel="C1")
    assert [m["text"] for m in hist["messages"]] == ["other", "deployed"]  # newest first
    assert "metadata" not in hist["messages"][1]  # only with include_all_metadata
    assert hist["messages"][1]["blocks"] == blocks  # update without blocks keeps them
    hist = await client.conversations_history(channel="C1", include_all_metadata=True)
    assert hist["messages"][1]["metadata"] == meta
    assert hist["messages"][1]["edited"]["user"] == "U0000BOT"

    limited = await client.conversations_history(channel="C1", limit=1)
    assert [m["ts"] for m in limited["messages"]] == [second["ts"]] and limited["has_more"]
    page2 = await client.conversations_history(
        channel="C1", limit=1, cursor=limited["response_metadata"]["next_cursor"])
    assert [m["ts"] for m in page2["messages"]] == [first["ts"]] and not page2["has_more"]
    assert (await client.conversations_history(channel="C1", oldest=first["ts"]))[
        "messages"][0]["ts"] == second["ts"]
    window = await client.conversations_history(channel="C1", oldest=first["ts"],
                                                latest=first["ts"], inclusive=True)
    assert [m["ts"] for m in window["messages"]] == [first["ts"]]

    [msg, _] = slack.messages("C1")
    assert msg.text == "deployed" and msg.metadata == meta
    assert [e["text"] for e in msg.edits] == ["deploying"]
    assert slack.posted_texts("C1") == ["deploying", "other"]


async def test_threads_ephemeral_delete_permalink_reactions(
    slack: FakeSlack, client: AsyncWebClient,
) -> None:
    parent = await client.chat_postMessage(channel="#deploys", text="parent")
    cid = parent["channel"]
    assert cid.startswith("C")  # created on first use (lenient mode)
    assert slack.state.channels[cid]["name"] == "deploys"
    reply = await client.chat_postMessage(channel=cid, text="reply", thread_ts=parent["ts"])
    hist = await client.conversations_history(channel=cid)
    assert [m["text"] for m in hist["messages"]] == ["parent"]
    assert hist["messages"][0]["reply_count"] == 1
    replies = await client.conversations_replies(channel=cid, ts=parent["ts"])
    assert [m["text"] for m in replies["messages"]] == ["parent", "reply"]
    assert [m.text for m in slack.messages("deploys", thread_ts=parent["ts"])] == [
        "parent", "reply"]

    eph = await client.chat_postEphemeral(channel=cid, user="U1", text="only you")
    assert TS.match(eph["message_ts"]) and slack.ephemerals(cid, "U1")[0].text == "only you"

    link = await client.chat_getPermalink(channel=cid, message_ts=reply["ts"])
    assert link["permalink"].endswith(f"thread_ts={parent['ts']}&cid={cid}")

    await client.reactions_add(channel=cid, timestamp=parent["ts"], name="rocket")
    with pytest.raises(SlackApiError) as err:
        await client.reactions_add(channel=cid, timestamp=parent["ts"], name="rocket")
    assert err.value.response["error"] == "already_reacted"

    deleted = await client.chat_delete(channel=cid, ts=reply["ts"])
    assert deleted["ts"] == reply["ts"]
    assert [m.text for m in slack.messages(cid)] == ["parent"]
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel=cid, ts=reply["ts"], text="x")
    assert err.value.response["error"] == "message_not_found"


async def test_429_is_seen_by_the_client_and_retried_by_the_rate_limit_handler(
    slack: FakeSlack, client: AsyncWebClient,
) -> None:
    slack.fail("chat.postMessage", status=429, retry_after=2, times=1)
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", text="hi")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "2"
    assert err.value.response["error"] == "ratelimited"

    # slack-sdk sleeps int(Retry-After) + random() (< 1 s here) and sends again.
    slack.fail("chat.postMessage", status=429, retry_after=0, times=1)
    retrying = AsyncWebClient(token="xoxb-test", base_url=slack.base_url,
                              retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    resp = await retrying.chat_postMessage(channel="C1", text="hi")
    assert resp["ok"]
    attempts = slack.calls("chat.postMessage")
    assert [(c.status, c.injected) for c in attempts] == [
        (429, "status"), (429, "status"), (200, None)]
    assert len(slack.calls("chat.postMessage", ok=True)) == 1 == len(slack.messages("C1"))


async def test_5xx_for_n_times_then_heals(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.fail("conversations.history", status=503, times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            await client.conversations_history(channel="C1")
        assert err.value.response.status_code == 503
    assert (await client.conversations_history(channel="C1"))["ok"]

    slack.fail("*", status=500, times=1)
    retrying = AsyncWebClient(
        token="xoxb-test", base_url=slack.base_url,
        retry_handlers=[AsyncServerErrorRetryHandler(
            max_retry_count=2, interval_calculator=FixedValueRetryIntervalCalculator(0.01))])
    assert (await retrying.auth_test())["ok"]
    assert [c.status for c in slack.calls("auth.test")] == [500, 200]


async def test_fail_for_seconds_and_heal(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.fail("auth.test", status=500, for_seconds=0.2)
    with pytest.raises(SlackApiError):
        await client.auth_test()
    await asyncio.sleep(0.25)
    assert (await client.auth_test())["ok"]
    slack.fail("auth.test", status=500)  # no limit: until heal()
    with pytest.raises(SlackApiError):
        await client.auth_test()
    slack.heal()
    assert (await client.auth_test())["ok"]


async def test_error_injection(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.error("conversations.open", "missing_scope", times=1, needed="im:write")
    with pytest.raises(SlackApiError) as err:
        await client.conversations_open(users="U1")
    assert err.value.response.status_code == 200
    assert err.value.response["error"] == "missing_scope"
    assert err.value.response["needed"] == "im:write"
    opened = await client.conversations_open(users=["U1"])
    assert opened["channel"]["id"].startswith("D")
    assert (await client.conversations_open(users="U1"))["channel"]["id"] == opened[
        "channel"]["id"]
    [failed, *rest] = slack.calls("conversations.open")
    assert failed.injected == "error" and not failed.ok and all(c.ok for c in rest)


async def test_delay(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.delay("chat.postMessage", 0.2, times=1)
    start = time.monotonic()
    await client.chat_postMessage(channel="C1", text="slow")
    assert time.monotonic() - start >= 0.2
    start = time.monotonic()
    await client.chat_postMessage(channel="C1", text="fast")
    assert time.monotonic() - start < 0.2


async def test_request_encodings_are_decoded(slack: FakeSlack, client: AsyncWebClient) -> None:
    blocks = [{"type": "divider"}]
    await client.chat_postMessage(channel="C1", text="json", blocks=blocks)
    await client.conversations_invite(channel="C1", users=["U1", "U2"])
    await client.api_call("chat.postMessage",
                          data={"channel": "C1", "text": "form", "blocks": json.dumps(blocks)})
    await client.api_call("api.test", data={"channel": "C1"},
                          files={"file": io.BytesIO(b"\x00bytes")})
    await client.conversations_history(channel="C1", include_all_metadata=True)

    as_json, as_form = slack.calls("chat.postMessage")
    assert as_json.encoding == "json" and as_json.body["blocks"] == blocks and not as_json.form
    assert as_form.encoding == "form" and as_form.body["blocks"] == blocks
    assert as_form.form["blocks"] == json.dumps(blocks)  # raw form kept
    assert slack.messages("C1")[1].blocks == blocks

    [invite] = slack.calls("conversations.invite")
    assert invite.encoding == "query" and invite.http_method == "POST"  # params= → URL
    assert invite.body == {"channel": "C1", "users": "U1,U2"}
    [upload] = slack.calls("api.test")
    assert upload.encoding == "multipart" and upload.body["channel"] == "C1"
    assert upload.files["file"].content == b"\x00bytes"
    assert upload.files["file"].filename == "file"
    [hist] = slack.calls("conversations.history")
    assert hist.http_method == "GET" and hist.body["include_all_metadata"] == "1"


async def test_response_url_is_recorded_and_acts_on_the_channel(
    slack: FakeSlack, client: AsyncWebClient,
) -> None:
    posted = await client.chat_postMessage(channel="C1", text="approve?")
    url = slack.response_url("approve-1", channel="C1", message_ts=posted["ts"], user="U1")
    hook = AsyncWebhookClient(url)
    assert (await hook.send(text="approved", replace_original=True)).status_code == 200
    assert (await hook.send(text="noted", response_type="in_channel")).status_code == 200
    assert (await hook.send(text="just you")).status_code == 200
    [call, *_] = slack.calls("response_url")
    assert call.name == "approve-1" and call.body == {"text": "approved",
                                                      "replace_original": True}
    assert [m.text for m in slack.messages("C1")] == ["approved", "noted"]
    assert slack.messages("C1")[0].edits[0]["text"] == "approve?"
    assert slack.ephemerals("C1", "U1")[0].text == "just you"

    free = AsyncWebhookClient(slack.response_url("unbound"))
    for _ in range(5):
        assert (await free.send(text="x")).status_code == 200
    over = await free.send(text="x")  # Slack allows 5 uses
    assert over.status_code == 404 and json.loads(over.body)["error"] == "used_url"


async def test_auth_failures(slack: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as err:
        await AsyncWebClient(token="bogus", base_url=slack.base_url).auth_test()
    assert err.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as err:
        await AsyncWebClient(base_url=slack.base_url).auth_test()
    assert err.value.response["error"] == "not_authed"
    async with FakeSlack(tokens={"xoxb-good"}) as strict:
        assert (await AsyncWebClient(token="xoxb-good", base_url=strict.base_url).auth_test())[
            "ok"]
        with pytest.raises(SlackApiError):
            await AsyncWebClient(token="xoxb-other", base_url=strict.base_url).auth_test()
    assert [c.error for c in slack.calls()] == ["invalid_auth", "not_authed"]


async def test_unknown_method(slack: FakeSlack, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as err:
        await client.api_call("nope.nothing")
    assert err.value.response.status_code == 200
    assert err.value.response["error"] == "unknown_method"
    assert slack.calls("nope.nothing")[0].error == "unknown_method"


async def test_directory_groups_channels_and_views(
    slack: FakeSlack, client: AsyncWebClient,
) -> None:
    slack.add_user("U1", "alice", real_name="Alice A", email="alice@example.com",
                   tz="Europe/Paris")
    slack.add_usergroup("S1", ["U1", "U2"])
    found = await client.users_lookupByEmail(email="Alice@example.com")
    assert found["user"]["id"] == "U1" and found["user"]["tz"] == "Europe/Paris"
    assert (await client.users_info(user="U1"))["user"]["profile"]["email"] == "alice@example.com"
    for call, error in [(client.users_info(user="U9"), "user_not_found"),
                        (client.users_lookupByEmail(email="x@y"), "users_not_found"),
                        (client.usergroups_users_list(usergroup="S9"), "no_such_subteam")]:
        with pytest.raises(SlackApiError) as err:
            await call
        assert err.value.response["error"] == error
    assert (await client.usergroups_users_list(usergroup="S1"))["users"] == ["U1", "U2"]

    created = await client.conversations_create(name="inc-42")
    cid = created["channel"]["id"]
    assert created["channel"]["name"] == "inc-42" and created["channel"]["is_member"]
    with pytest.raises(SlackApiError) as err:
        await client.conversations_create(name="inc-42")
    assert err.value.response["error"] == "name_taken"
    await client.conversations_invite(channel=cid, users="U1")
    info = await client.conversations_info(channel=cid)
    assert info["channel"]["num_members"] == 2
    assert (await client.conversations_join(channel=cid))["warning"] == "already_in_channel"
    dm = await client.chat_postMessage(channel="U1", text="you are paged")
    assert dm["channel"].startswith("D") and slack.posted_texts(dm["channel"]) == [
        "you are paged"]

    view = {"type": "modal", "title": {"type": "plain_text", "text": "Deploy"}, "blocks": []}
    opened = await client.views_open(trigger_id="123.456", view=view)
    vid = opened["view"]["id"]
    updated = await client.views_update(view_id=vid, view={**view, "callback_id": "cb"},
                                        hash=opened["view"]["hash"])
    assert updated["view"]["id"] == vid and updated["view"]["callback_id"] == "cb"
    with pytest.raises(SlackApiError) as err:
        await client.views_update(view_id=vid, view=view, hash=opened["view"]["hash"])
    assert err.value.response["error"] == "hash_conflict"
    home = await client.views_publish(user_id="U1", view={"type": "home", "blocks": []})
    assert home["view"]["type"] == "home" and slack.state.home_views["U1"]["id"]


async def test_wait_for_and_rate_helpers(slack: FakeSlack, client: AsyncWebClient) -> None:
    async def later() -> None:
        await asyncio.sleep(0.05)
        for text in ("a", "b", "c"):
            await client.chat_postMessage(channel="C1", text=text)
        await client.chat_postMessage(channel="C2", text="d")

    task = asyncio.create_task(later())
    calls = await slack.wait_for("chat.postMessage", lambda c: c.channel == "C1", count=3)
    assert [c.body["text"] for c in calls] == ["a", "b", "c"]
    await task
    times = slack.per_channel_send_times()
    assert set(times) == {"C1", "C2"} and len(times["C1"]) == 3
    assert slack.max_rate("C1", window=10.0) == 3 and slack.max_rate("C2") == 1
    assert slack.max_rate("C1", window=1e-9) == 1

    with pytest.raises(AssertionError, match=r"(?s)waiting for 1 chat\.update.*chat\.postMessage"):
        await slack.wait_for("chat.update", timeout=0.05)
    slack.clear()
    assert slack.calls() == [] and len(slack.messages("C1")) == 3
