"""JiraClient against FakeJira, through the real `jira` library and real HTTP.

The fake serves from the test's event loop, so these tests also prove the client keeps the
library off the loop: a blocking call there would hang instead of failing.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest

from integrations.jira_issues import IssueRef, JiraClient, JiraError, escape_markup
from tests.fakes.jira_api import FakeJira

ISSUE = r"/rest/api/2/issue$"
SEARCH = r"/rest/api/2/search"


@pytest.fixture(params=["server", "cloud"])
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeJira]:
    async with FakeJira(cloud=request.param == "cloud") as jira:
        jira.add_project("OPS", components=["api", "db"])
        yield jira


@pytest.fixture
async def client(fake: FakeJira) -> AsyncIterator[JiraClient]:
    c = JiraClient(fake.base_url, fake.user, fake.token, timeout=5)
    yield c
    await c.close()


async def upsert(client: JiraClient, label: str = "pm-inc-7", **kw: Any) -> IssueRef:
    args: dict[str, Any] = {
        "unique_label": label,
        "project": "OPS",
        "issue_type": "Task",
        "summary": "Postmortem: INC-7 checkout errors",
        "description": "h2. Summary\nCheckout failed.",
        "labels": ["postmortem"],
        "components": ["api"],
    }
    return await client.upsert_issue(**(args | kw))


# -- create and update ---------------------------------------------------------------------


async def test_create_sends_jira_fields(fake: FakeJira, client: JiraClient) -> None:
    ana = fake.add_user("ana@example.com", "Ana Lima")
    owner = await client.account_for_email("ana@example.com")
    assert owner == ana

    ref = await upsert(
        client, summary="Postmortem:\n INC-7  checkout errors", assignee=owner, due=date(2024, 5, 1)
    )

    assert ref == IssueRef("OPS-1", f"{fake.base_url}/browse/OPS-1", created=True)
    [post] = fake.calls("POST", ISSUE)
    who = {"accountId": ana} if fake.cloud else {"name": ana}
    assert post.body == {
        "fields": {
            "project": {"key": "OPS"},
            "issuetype": {"name": "Task"},
            "summary": "Postmortem: INC-7 checkout errors",  # Jira refuses newlines
            "description": "h2. Summary\nCheckout failed.",
            "labels": ["pm-inc-7", "postmortem"],
            "components": [{"name": "api"}],
            "assignee": who,
            "duedate": "2024-05-01",
        }
    }
    basic = base64.b64encode(f"{fake.user}:{fake.token}".encode()).decode()
    assert {r.auth for r in fake.requests} == {f"Basic {basic}"}
    # Found by the label first; on Cloud through search/jql, the only search it still has.
    [search] = fake.calls("GET", SEARCH)
    assert search.path.endswith("/search/jql" if fake.cloud else "/search")
    assert search.query["jql"] == 'project = "OPS" AND labels = "pm-inc-7" ORDER BY created'
    issue = fake.issue_json("OPS-1")["fields"]
    assert (issue["summary"], issue["duedate"], issue["issuetype"]["name"]) == (
        "Postmortem: INC-7 checkout errors",
        "2024-05-01",
        "Task",
    )


async def test_second_upsert_updates_the_same_issue(fake: FakeJira, client: JiraClient) -> None:
    bob = fake.add_user("bob@example.com", "Bob")
    first = await upsert(client, assignee=bob)
    second = await upsert(
        client, summary="Postmortem: INC-7 (final)", components=["api", "db"], labels=[]
    )

    assert (second.key, second.created) == (first.key, False)
    assert len(fake.issues) == 1
    assert len(fake.calls("POST", ISSUE)) == 1
    [put] = fake.calls("PUT", r"/issue/")
    assert put.body["fields"] == {
        "summary": "Postmortem: INC-7 (final)",
        "description": "h2. Summary\nCheckout failed.",
        "labels": ["pm-inc-7"],  # the unique label stays, whatever the caller passes
        "components": [{"name": "api"}, {"name": "db"}],
    }
    issue = fake.issues[first.key]
    assert (issue.summary, issue.components, issue.labels) == (
        "Postmortem: INC-7 (final)",
        ["api", "db"],
        ["pm-inc-7"],
    )
    assert issue.assignee == bob  # no assignee given: what was set is kept

    # Nothing changed: no edit, so watchers are not notified again.
    again = await upsert(
        client, summary="Postmortem: INC-7 (final)", components=["db", "api"], labels=[]
    )
    assert (again.key, again.created) == (first.key, False)
    assert len(fake.calls("PUT")) == 1


async def test_lost_create_answer_is_found_by_label(fake: FakeJira, client: JiraClient) -> None:
    fake.drop_response_after_create()  # Jira stores the issue, the connection then closes

    ref = await upsert(client)

    assert (ref.key, ref.created) == ("OPS-1", True)
    assert [r.status for r in fake.calls("POST", ISSUE)] == [0]  # sent once, never re-sent
    assert list(fake.issues) == ["OPS-1"]


async def test_retry_after_lost_create_makes_no_second_issue(
    fake: FakeJira, client: JiraClient
) -> None:
    fake.drop_response_after_create(status=504)
    fake.fail_next(1, 503, method="GET", path=SEARCH, skip=1)  # the check after it fails too

    with pytest.raises(JiraError) as failed:
        await upsert(client)
    assert (failed.value.kind, failed.value.status) == ("unavailable", 504)

    ref = await upsert(client)  # what the scheduler does later

    assert (ref.key, ref.created) == ("OPS-1", False)
    assert len(fake.issues) == 1 and len(fake.calls("POST", ISSUE)) == 1


# -- sub-tasks and links --------------------------------------------------------------------


async def test_subtask_with_parent_and_a_linked_issue(fake: FakeJira, client: JiraClient) -> None:
    parent = await upsert(client)
    sub = await upsert(
        client, "pm-inc-7-a1", issue_type="Sub-task", summary="Add a retry", parent=parent.key
    )
    task = await upsert(client, "pm-inc-7-a2", summary="Alert on checkout errors")

    assert fake.calls("POST", ISSUE)[1].body["fields"]["parent"] == {"key": parent.key}
    assert fake.issues[sub.key].parent == parent.key
    assert await client.link(parent.key, task.key) is True
    assert await client.link(parent.key, task.key) is False  # already there
    assert await client.link(task.key, parent.key) is False  # either way round

    [post] = fake.calls("POST", r"/issueLink$")
    assert post.body == {
        "type": {"name": "Relates"},
        "inwardIssue": {"key": parent.key},
        "outwardIssue": {"key": task.key},
        "comment": None,
    }
    fields = fake.issue_json(parent.key)["fields"]
    assert [s["key"] for s in fields["subtasks"]] == [sub.key]
    assert [ln["outwardIssue"]["key"] for ln in fields["issuelinks"]] == [task.key]


async def test_lost_link_answer_is_not_repeated(fake: FakeJira, client: JiraClient) -> None:
    a, b = await upsert(client, "pm-a"), await upsert(client, "pm-b")
    fake.lose_responses(1, method="POST", path=r"/issueLink$")

    assert await client.link(a.key, b.key, "Blocks") is True
    assert await client.link(a.key, b.key, "Blocks") is False
    assert len(fake.links) == 1 and len(fake.calls("POST", r"/issueLink$")) == 1


# -- failures ------------------------------------------------------------------------------


async def test_503_is_unavailable_and_not_retried_by_the_library(
    fake: FakeJira, client: JiraClient
) -> None:
    await client.check()
    body = {"errorMessages": ["Jira is in maintenance mode"], "errors": {}}
    fake.fail_next(1, 503, body=body, retry_after=30, method="POST", path=ISSUE)

    started = time.monotonic()
    with pytest.raises(JiraError) as failed:
        await upsert(client)

    err = failed.value
    assert (err.kind, err.status, err.retryable, err.retry_after) == ("unavailable", 503, True, 30)
    assert "Jira is in maintenance mode" in str(err)
    # The library would have slept 60 s and re-sent the POST; here the caller decides.
    assert time.monotonic() - started < 5
    assert len(fake.calls("POST", ISSUE)) == 1 and not fake.issues


async def test_429_is_unavailable(fake: FakeJira, client: JiraClient) -> None:
    fake.fail_next(1, 429, retry_after=7, path=SEARCH)

    with pytest.raises(JiraError) as failed:
        await upsert(client)

    assert (failed.value.kind, failed.value.status, failed.value.retry_after) == (
        "unavailable",
        429,
        7,
    )
    assert len(fake.calls(path=SEARCH)) == 1 and not fake.calls("POST")


@pytest.mark.parametrize("mode", ["503", "drop"])
async def test_jira_down_then_back(fake: FakeJira, client: JiraClient, mode: Any) -> None:
    fake.down(mode)
    with pytest.raises(JiraError) as failed:
        await upsert(client)
    assert failed.value.kind == "unavailable"
    assert failed.value.status == (503 if mode == "503" else None)

    fake.up()
    assert (await upsert(client)).created is True
    assert len(fake.issues) == 1


async def test_401_is_auth_with_jiras_message(fake: FakeJira) -> None:
    client = JiraClient(fake.base_url, fake.user, "wrong-secret")
    with pytest.raises(JiraError) as failed:
        await client.check()

    err = failed.value
    assert (err.kind, err.status, err.retryable) == ("auth", 401, False)
    assert "Client must be authenticated to access this resource." in str(err)
    assert "wrong-secret" not in str(err) and "Basic" not in str(err)  # no credentials leak
    assert len(fake.requests) == 1  # refused at the first request, not retried


async def test_403_is_forbidden(fake: FakeJira, client: JiraClient) -> None:
    errors = {"project": "You do not have permission to create issues in this project."}
    fake.fail_next(1, 403, body={"errorMessages": [], "errors": errors}, method="POST")

    with pytest.raises(JiraError) as failed:
        await upsert(client)

    assert (failed.value.kind, failed.value.retryable) == ("forbidden", False)
    assert "project: You do not have permission to create issues" in failed.value.message


async def test_invalid_requests_carry_jiras_words(fake: FakeJira, client: JiraClient) -> None:
    with pytest.raises(JiraError) as unknown_project:
        await upsert(client, project="NOPE")
    with pytest.raises(JiraError) as unknown_component:
        await upsert(client, components=["payments"])

    assert unknown_project.value.kind == "invalid"
    assert "The value 'NOPE' does not exist for the field 'project'." in str(unknown_project.value)
    assert (unknown_component.value.kind, unknown_component.value.status) == ("invalid", 400)
    assert unknown_component.value.message == "components: Component name 'payments' is not valid"
    assert not fake.issues


async def test_unique_label_must_be_one_word(fake: FakeJira, client: JiraClient) -> None:
    with pytest.raises(JiraError) as failed:
        await upsert(client, "pm inc 7")
    assert failed.value.kind == "invalid"
    assert not fake.requests  # refused before asking Jira


# -- accounts and credentials --------------------------------------------------------------


async def test_account_for_email(fake: FakeJira, client: JiraClient) -> None:
    ana = fake.add_user("ana@example.com", "Ana Lima")
    fake.add_user("ana.maria@example.com", "Ana Maria")

    assert await client.account_for_email("ANA@example.com") == ana
    assert await client.account_for_email("nobody@example.com") is None
    [first, *_] = fake.calls("GET", r"/user/search$")
    assert first.query["query" if fake.cloud else "username"] == "ANA@example.com"


async def test_bearer_token_on_server() -> None:
    async with FakeJira(user=None, token="pat-123") as fake:
        client = JiraClient(fake.base_url, None, "pat-123")
        assert await client.check() == "ChatOps Bot"
        await client.close()
        assert {r.auth for r in fake.requests} == {"Bearer pat-123"}


# -- markup ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("rollback v1.2", "rollback v1.2"),
        ("a | b", "a \\| b"),
        ("{code} [link] *bold* _it_", "\\{code\\} \\[link\\] \\*bold\\* \\_it\\_"),
        ("-5% !img! ~x^ ??c #1 +y", "\\-5% \\!img\\! \\~x\\^ \\?\\?c \\#1 \\+y"),
        ("C:\\temp", "C:&#92;temp"),
        ("line one\n\nline two ", "line one \\\\ line two"),
        ("", " "),
    ],
)
def test_escape_markup(text: str, cell: str) -> None:
    assert escape_markup(text) == cell
