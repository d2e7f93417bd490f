"""Publishing postmortems to the fake Jira through the real `jira` client:
the fields, idempotency, Jira being down, and Jira refusing."""

from __future__ import annotations

import asyncio

from tests.conftest import RunningBot, eventually
from tests.fakes.jira_api import FakeJira
from tests.postmortems.conftest import postmortem, say, wait_jira


async def _drafted(b: RunningBot) -> None:
    said = await say(b, "/incident", "declare Checkout is slow sev=SEV2 service=checkout")
    assert "Declared INC-1" in said
    said = await say(b, "/postmortem", "INC-1")
    assert "Drafted the postmortem of INC-1" in said


async def test_publish_creates_one_issue_per_postmortem_and_action_item(
    pm_bot: RunningBot, jira: FakeJira
) -> None:
    b = pm_bot
    await _drafted(b)
    said = await say(
        b, "/postmortem", 'action INC-1 "Alert on checkout p99" <@UBOB|bob> due=2026-12-01'
    )
    assert "Added action item" in said and "<@UBOB>" in said
    said = await say(b, "/postmortem", 'action INC-1 "Load-test the cart before launches"')
    said = await say(b, "/postmortem", "edit INC-1 summary Checkout slowed down; we scaled it.")
    assert "version 4" in said  # drafted, two items, one edit

    await say(b, "/postmortem", "publish INC-1")
    pm = await wait_jira(b.bot.db, "published", "failed")
    assert pm.jira_status == "published", pm.jira_error
    assert len(jira.issues) == 3
    main = jira.issue_json(pm.jira_key or "")["fields"]
    assert main["summary"] == "Postmortem: Checkout is slow (INC-1)"
    assert main["issuetype"]["name"] == "Task" and main["project"]["key"] == "OPS"
    assert set(main["labels"]) == {"postmortem", "chatops-postmortem-inc-1"}
    assert [c["name"] for c in main["components"]] == ["shop"]
    assert "h2. Summary\nCheckout slowed down; we scaled it." in main["description"]
    assert "||Time (UTC)||What||Who||" in main["description"]
    assert "||Measure||Duration||" in main["description"]

    _pm, items = await postmortem(b.bot.db)
    first = jira.issue_json(items[0].jira_key or "")["fields"]
    assert first["summary"] == "Alert on checkout p99"
    assert first["assignee"]["name"] == "bob-account"  # mapped in the config
    assert first["duedate"] == "2026-12-01"
    assert "chatops-postmortem-inc-1-action-1" in first["labels"]
    second = jira.issue_json(items[1].jira_key or "")["fields"]
    assert second.get("assignee") is None and second.get("duedate") is None
    assert {(link.inward, link.outward) for link in jira.links} == {
        (pm.jira_key, items[0].jira_key),
        (pm.jira_key, items[1].jira_key),
    }
    posted = await b.slack.wait_for(
        "chat.postMessage", lambda c: c.ok and "Published in Jira" in c.body["text"]
    )
    assert pm.jira_key in posted[0].body["text"]

    # Republish after an edit: the same issues, updated in place.
    creates = len(jira.calls("POST", r"/rest/api/2/issue$"))
    await say(b, "/postmortem", "edit INC-1 lessons Scale-out worked; the alert came late.")
    await say(b, "/postmortem", "publish INC-1")
    await b.slack.wait_for(
        "chat.postMessage", lambda c: c.ok and "Updated in Jira" in c.body["text"], timeout=20
    )
    assert len(jira.issues) == 3
    assert len(jira.calls("POST", r"/rest/api/2/issue$")) == creates
    main = jira.issue_json(pm.jira_key or "")["fields"]
    assert "Scale-out worked; the alert came late." in main["description"]
    assert len(jira.links) == 2
    pm = (await postmortem(b.bot.db))[0]
    assert pm.published_version == pm.version == 5


async def test_jira_down_then_back_publishes_once(pm_bot: RunningBot, jira: FakeJira) -> None:
    b = pm_bot
    await _drafted(b)
    jira.down("503")
    await say(b, "/postmortem", "publish INC-1")
    await b.slack.wait_for(
        "chat.postMessage", lambda c: c.ok and "Jira is unavailable" in c.body["text"], timeout=10
    )
    await eventually(lambda: len(jira.requests) >= 3, timeout=10)  # it keeps trying
    assert (await postmortem(b.bot.db))[0].jira_status == "pending"
    jira.up()
    pm = await wait_jira(b.bot.db, "published", "failed")
    assert pm.jira_status == "published", pm.jira_error
    await b.slack.wait_for(
        "chat.postMessage", lambda c: c.ok and "Published in Jira" in c.body["text"], timeout=10
    )
    await asyncio.sleep(1.5)  # room for a stray retry
    assert len(jira.issues) == 1
    said = [c.body["text"] for c in b.slack.calls("chat.postMessage", ok=True)]
    assert sum("Jira is unavailable" in t for t in said) == 1  # said once, not per retry
    assert sum("Published in Jira" in t for t in said) == 1


async def test_lost_answer_to_the_create_does_not_file_a_second_issue(
    pm_bot: RunningBot, jira: FakeJira
) -> None:
    b = pm_bot
    await _drafted(b)
    jira.drop_response_after_create()
    await say(b, "/postmortem", "publish INC-1")
    pm = await wait_jira(b.bot.db, "published", "failed")
    assert pm.jira_status == "published", pm.jira_error
    assert len(jira.issues) == 1


async def test_401_is_reported_and_not_retried(pm_bot: RunningBot, jira: FakeJira) -> None:
    b = pm_bot
    await _drafted(b)
    jira.require_auth("someone-else@example.com", "other-token")
    await say(b, "/postmortem", "publish INC-1")
    pm = await wait_jira(b.bot.db, "failed", "published")
    assert pm.jira_status == "failed"
    assert "auth" in (pm.jira_error or "")
    [said] = await b.slack.wait_for(
        "chat.postMessage", lambda c: c.ok and "Jira refused the postmortem" in c.body["text"]
    )
    assert "Nothing more will be tried" in said.body["text"]
    tried = len(jira.requests)
    await asyncio.sleep(1.5)  # retries would come within retry_max (1 s)
    assert len(jira.requests) == tried
    assert jira.issues == {}


async def test_required_postmortem_reminds_until_published(
    pm_bot: RunningBot, jira: FakeJira
) -> None:
    b = pm_bot
    said = await say(b, "/incident", "declare Payments down sev=SEV1 service=checkout")
    assert "Declared INC-1" in said
    await say(b, "/incident", "resolve INC-1 failover")
    pm = await wait_jira(b.bot.db, "unpublished")  # drafted by itself on resolution
    assert pm.created_by == "chatops"

    def reminders() -> list[str]:
        return [
            c.body["text"]
            for c in b.slack.calls("chat.postMessage", ok=True)
            if "is not published yet" in c.body["text"]
        ]

    await eventually(lambda: len(reminders()) >= 2, timeout=10)  # every second here
    await say(b, "/postmortem", "publish INC-1")
    await wait_jira(b.bot.db, "published")
    await asyncio.sleep(1.5)
    settled = len(reminders())
    await asyncio.sleep(2.5)  # two more periods: nothing more once published
    assert len(reminders()) == settled


async def test_an_early_draft_is_brought_up_to_date_on_resolution(
    pm_bot: RunningBot, jira: FakeJira
) -> None:
    b = pm_bot
    await _drafted(b)  # drafted while the incident is still open
    await say(b, "/postmortem", "edit INC-1 summary What we know so far.")
    early = (await postmortem(b.bot.db))[0]
    assert "ongoing" in early.sections["impact"]
    assert early.sections["metrics"]["resolve"] is None
    await say(b, "/incident", "resolve INC-1 fixed")

    async def refreshed() -> bool:
        return (await postmortem(b.bot.db))[0].version > early.version

    await eventually(refreshed, timeout=10)
    pm = (await postmortem(b.bot.db))[0]
    assert pm.sections["summary"] == "What we know so far."  # people's text stays
    assert "ongoing" not in pm.sections["impact"]
    assert pm.sections["metrics"]["resolve"] is not None
    assert any("Resolved" in row["text"] for row in pm.sections["timeline"])
