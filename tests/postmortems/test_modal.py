"""Completing a postmortem in a Slack modal: the Edit button opens a form
pre-filled with the current sections, submitting it makes a new version
shown in the thread; elsewhere the button says how to edit by command."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import col, select

from bot.core.chat import ActionContext
from bot.core.models import AuditEntry
from bot.postmortems.modal import SECTIONS, edit_view, edited_sections
from bot.postmortems.models import Postmortem, PostmortemVersion
from integrations.slack import SlackCallError, SlackPoster
from tests.conftest import BOT_TOKEN, RunningBot, eventually
from tests.fakes.slack_api import Call, FakeSlack


async def say(rb: RunningBot, command: str, text: str, user: str = "UALICE") -> str:
    name = f"r{len(rb.slack.calls())}-{command}"
    await rb.requests.command(command, text, user=user, response_url=rb.slack.response_url(name))
    [call] = await rb.slack.wait_for("response_url", lambda c: c.name == name, timeout=10)
    return str(call.body["text"])


async def press(rb: RunningBot, value: str, user: str = "UBOB", **kw: Any) -> str:
    """Press Edit; the text of the bot's answer to the response_url, if any."""
    name = f"p{len(rb.slack.calls())}"
    result = await rb.requests.action(
        "postmortem_edit", value, user=user, response_url=rb.slack.response_url(name), **kw
    )
    assert result.status == 200
    return name


async def stored(rb: RunningBot, incident_id: int = 1) -> Postmortem:
    async with rb.bot.db.transaction() as s:
        query = select(Postmortem).where(Postmortem.incident_id == incident_id)
        return (await s.exec(query)).one()


def has_edit_button(call: Call) -> bool:
    return any(
        e.get("action_id") == "postmortem_edit"
        for b in call.body.get("blocks") or []
        for e in b.get("elements", [])
    )


async def drafted(rb: RunningBot) -> Call:
    """An incident with a drafted postmortem; the postmortem's message."""
    answer = await say(rb, "/incident", "declare Checkout is slow sev=2 service=checkout")
    assert answer.startswith("Declared INC-1"), answer
    assert "Drafted the postmortem of INC-1" in await say(rb, "/postmortem", "INC-1")
    [message] = await rb.slack.wait_for(
        "chat.postMessage", lambda c: c.ok and has_edit_button(c), timeout=10
    )
    return message


def answers(view: dict[str, Any], **changed: str) -> dict[str, Any]:
    """The state Slack submits: every input's text, as shown or as `changed`."""
    values: dict[str, Any] = {}
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        element = block["element"]
        text = changed.get(block["block_id"], element.get("initial_value"))
        values[block["block_id"]] = {
            element["action_id"]: {"type": "plain_text_input", "value": text}
        }
    return values


def inputs(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}


async def test_edit_in_a_modal_makes_a_new_version_shown_in_the_thread(
    running_bot: RunningBot,
) -> None:
    rb = running_bot
    message = await drafted(rb)
    channel, ts = str(message.channel), str(message.response["ts"])
    before = await stored(rb)
    assert before.version == 1

    await press(rb, "1", channel=channel, message_ts=ts, thread_ts=message.body.get("thread_ts"))
    [opened] = await rb.slack.wait_for("views.open", timeout=5)
    assert opened.ok, opened.response
    assert opened.body["trigger_id"].startswith("trigger.")
    view = opened.body["view"]
    assert view["type"] == "modal" and view["callback_id"] == "postmortem_edit"
    assert view["private_metadata"] == "1" and len(view["title"]["text"]) <= 24
    fields = inputs(view)
    assert list(fields) == list(SECTIONS)
    for section, element in fields.items():
        assert element["type"] == "plain_text_input" and element["max_length"] == 3000
        assert element["initial_value"] == before.sections[section], section
        assert element["multiline"] is (section != "title")

    new_summary = "A bad config push made checkout time out; reverting it fixed it."
    shown = opened.response["view"]  # what Slack sends back on submission
    result = await rb.requests.view_submission(
        "postmortem_edit", answers(shown, summary=new_summary), "1", user="UBOB", view=shown
    )
    assert result.status == 200 and result.text == ""  # a plain ack closes the form

    async def saved() -> bool:
        return (await stored(rb)).version == 2

    await eventually(saved, timeout=10)
    after = await stored(rb)
    assert after.sections["summary"] == new_summary
    assert {k: v for k, v in after.sections.items() if k != "summary"} == {
        k: v for k, v in before.sections.items() if k != "summary"
    }
    # The message in the thread was edited in place to the new version.
    [update] = await rb.slack.wait_for(
        "chat.update", lambda c: c.ok and c.body.get("ts") == ts, timeout=10
    )
    assert new_summary in update.body["text"] and "version 2" in update.body["text"]
    assert new_summary in rb.slack.message(channel, ts).text
    async with rb.bot.db.transaction() as s:
        versions = (
            await s.exec(select(PostmortemVersion).order_by(col(PostmortemVersion.version)))
        ).all()
        audit = (
            await s.exec(select(AuditEntry).where(AuditEntry.action == "postmortem.edit"))
        ).all()
    assert [(v.version, v.author, v.change) for v in versions][1] == (2, "UBOB", "edited summary")
    assert [(a.actor, a.transport) for a in audit] == [("UBOB", "slack")]
    # Nothing to tell Bob: the form closed and the thread shows it.
    assert all(c.body.get("channel") != "UBOB" for c in rb.slack.calls("chat.postMessage"))


async def test_saving_keeps_what_others_changed_since_the_form_opened(
    running_bot: RunningBot,
) -> None:
    rb = running_bot
    message = await drafted(rb)
    await press(rb, "1", channel=str(message.channel), message_ts=str(message.response["ts"]))
    [opened] = await rb.slack.wait_for("views.open", timeout=5)
    shown = opened.response["view"]
    # Alice edits the impact by command while Bob's form is open.
    answer = await say(rb, "/postmortem", "edit INC-1 impact Checkout failed for 30% of EU users")
    assert "version 2" in answer
    result = await rb.requests.view_submission(
        "postmortem_edit", answers(shown, lessons="Alert earlier."), "1", user="UBOB", view=shown
    )
    assert result.status == 200

    async def saved() -> bool:
        return (await stored(rb)).version == 3

    await eventually(saved, timeout=10)
    pm = await stored(rb)
    assert pm.sections["lessons"] == "Alert earlier."
    assert pm.sections["impact"] == "Checkout failed for 30% of EU users"


async def test_form_problems_and_errors(running_bot: RunningBot) -> None:
    rb = running_bot
    message = await drafted(rb)
    await press(rb, "1", channel=str(message.channel), message_ts=str(message.response["ts"]))
    [opened] = await rb.slack.wait_for("views.open", timeout=5)
    shown = opened.response["view"]

    # An emptied field: Slack shows the error under it and keeps the form open.
    result = await rb.requests.view_submission(
        "postmortem_edit", answers(shown, summary="  "), "1", user="UBOB", view=shown
    )
    assert result.status == 200
    body = json.loads(result.text)
    assert body["response_action"] == "errors" and list(body["errors"]) == ["summary"]

    # A form for an incident that is gone: the bot says so in a DM, and lives on.
    result = await rb.requests.view_submission(
        "postmortem_edit", answers(shown, summary="New words"), "42", user="UBOB", view=shown
    )
    assert result.status == 200 and result.text == ""
    [dm] = await rb.slack.wait_for(
        "chat.postMessage", lambda c: c.ok and c.body.get("channel") == "UBOB", timeout=10
    )
    assert "INC-42" in dm.body["text"]
    assert (await stored(rb)).version == 1

    # Slack refuses to open the form (the trigger expired): directions instead.
    rb.slack.error("views.open", "expired_trigger_id", times=1)
    name = await press(rb, "1", channel=str(message.channel))
    [said] = await rb.slack.wait_for("response_url", lambda c: c.name == name, timeout=10)
    assert "expired_trigger_id" in said.body["text"]
    assert "/postmortem edit INC-1 <section> <text>" in said.body["text"]

    # No postmortem yet for that incident.
    await say(rb, "/incident", "declare Search is down sev=3 service=search")
    name = await press(rb, "2", channel=str(message.channel))
    [said] = await rb.slack.wait_for("response_url", lambda c: c.name == name, timeout=10)
    assert "INC-2 has no postmortem yet" in said.body["text"]
    assert len(rb.slack.calls("views.open", ok=True)) == 1


async def test_edit_button_in_the_terminal_gives_directions(running_bot: RunningBot) -> None:
    rb = running_bot
    await drafted(rb)
    handler = rb.bot.registry.actions["postmortem_edit"]
    for transport, trigger in (("shell", None), ("slack", None), ("shell", "t.1")):
        actx = ActionContext(
            action_id="postmortem_edit",
            value="1",
            user_id="UALICE",
            channel_id="C0TEST",
            transport=transport,  # type: ignore[arg-type]
            trigger_id=trigger,
        )
        reply = await handler(actx)
        assert reply is not None, transport
        assert "/postmortem edit INC-1 <section> <text>" in reply.text
        assert "title, summary, impact, detection, contributing_factors, lessons" in reply.text
    assert rb.slack.calls("views.open") == []


def test_the_view_stays_within_slacks_limits() -> None:
    long = "x" * 3001
    pm = Postmortem(
        incident_id=123456789012,
        version=4,
        sections={"title": "T", "summary": long, "impact": "", "lessons": "ok"},
        created_by="UALICE",
    )
    view = edit_view(pm, "INC-123456789012345678")
    assert len(view["title"]["text"]) <= 24 and view["private_metadata"] == "123456789012"
    fields = inputs(view)
    # Too long to pre-fill without cutting it: left out, and the form says why.
    assert "summary" not in fields and "initial_value" not in fields["impact"]
    assert "summary" in json.dumps(view["blocks"][-1]) and "/postmortem edit" in json.dumps(
        view["blocks"][-1]
    )
    for block in view["blocks"]:
        if block["type"] == "input":
            assert len(block["label"]["text"]) <= 2000
    submitted = {**view, "state": {"values": answers(view, lessons="ok", impact="Some")}}
    assert edited_sections(submitted) == {"impact": "Some"}


async def test_slack_poster_views_and_emails(slack: FakeSlack) -> None:
    poster = SlackPoster(BOT_TOKEN, slack.base_url)
    assert await poster.user_email("UBOB") == "bob@example.com"
    slack.add_user("UNOMAIL", "nomail")
    assert await poster.user_email("UNOMAIL") is None
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Edit"}, "blocks": []}
    await poster.open_view("trigger.1", view)
    [call] = slack.calls("views.open")
    assert call.ok and call.body["view"]["title"]["text"] == "Edit"
    for trigger, bad, error in (
        ("trigger.1", view, "exchanged_trigger_id"),  # a trigger opens one view
        (
            "trigger.2",
            {**view, "title": {"type": "plain_text", "text": "x" * 25}},
            "invalid_arguments",
        ),
    ):
        try:
            await poster.open_view(trigger, bad)
        except SlackCallError as exc:
            assert (exc.kind, exc.error) == ("permanent", error)
        else:
            raise AssertionError(f"{error} expected")
