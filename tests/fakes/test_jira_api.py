"""FakeJira against the real `jira` library, for what JiraClient does not exercise.

The library is synchronous and the fake serves from this test's event loop, so every library
call runs in a worker thread (asyncio.to_thread); called on the loop it would deadlock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
import requests
from jira import JIRA, JIRAError

from .jira_api import FakeJira

T = TypeVar("T")


async def run(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def connect(fake: FakeJira, **kwargs: Any) -> JIRA:
    kwargs.setdefault("basic_auth", (fake.user, fake.token))
    return JIRA(server=fake.base_url, max_retries=0, **kwargs)


@pytest.fixture
async def fake() -> AsyncIterator[FakeJira]:
    async with FakeJira() as jira:
        jira.add_project("OPS")
        yield jira


async def test_library_create_by_names_and_prefetch(fake: FakeJira) -> None:
    # The library's own way: it looks the project and type up, then reloads the issue.
    def work() -> Any:
        jira = connect(fake)
        return jira.create_issue(project="OPS", issuetype="Bug", summary="s", labels=["x"])

    issue = await run(work)

    assert (issue.key, issue.fields.summary, issue.fields.issuetype.name) == ("OPS-1", "s", "Bug")
    assert [r.path.removeprefix("/rest/api/2") for r in fake.requests] == [
        "/serverInfo",
        "/project/OPS",
        "/project/10001",
        "/issue",
        "/issue/OPS-1",
    ]
    assert fake.requests[2].query == {"expand": "issueTypes"}
    assert fake.requests[3].body["fields"]["issuetype"] == {"id": "10002"}


TASK = {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "s"}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"summary": ""}, "summary", "You must specify a summary"),
        ({"project": {"key": "NOPE"}}, "project", "valid project is required"),
        ({"issuetype": {"name": "Sub-task"}}, "parent", "sub-task but parent"),
        ({"summary": "a\nb"}, "summary", "newline"),
        ({"labels": ["a b"]}, "labels", "contains spaces"),
        ({"priority": {"name": "High"}}, "priority", "cannot be set"),
    ],
)
async def test_create_validation(
    fake: FakeJira, change: dict[str, Any], field: str, message: str
) -> None:
    fields = TASK | change
    with pytest.raises(JIRAError) as failed:
        await run(lambda: connect(fake).create_issue(fields=fields, prefetch=False))

    assert failed.value.status_code == 400
    assert failed.value.response is not None
    errors = failed.value.response.json()["errors"]
    assert list(errors) == [field] and message in errors[field]
    assert not fake.issues


async def test_jql_subset(fake: FakeJira) -> None:
    fake.add_project("WEB")
    jira = await run(lambda: connect(fake))
    for project, labels in [("OPS", ["pm", "a"]), ("WEB", ["pm"]), ("OPS", ["b"])]:
        fields = TASK | {"project": {"key": project}, "labels": labels}
        await asyncio.to_thread(jira.create_issue, fields=fields, prefetch=False)

    def keys(jql: str, **kw: Any) -> list[str]:
        return [i.key for i in jira.search_issues(jql, fields="labels", **kw)]

    assert await run(lambda: keys('labels = "pm"')) == ["OPS-1", "WEB-1"]
    assert await run(lambda: keys("project = OPS AND labels = pm")) == ["OPS-1"]
    assert await run(lambda: keys("project = OPS ORDER BY created DESC", use_post=True)) == [
        "OPS-2",
        "OPS-1",
    ]
    assert fake.requests[-1].method == "POST"
    for bad, says in [("status = Open", "does not exist"), ("labels ~ pm", "cannot parse")]:
        with pytest.raises(JIRAError) as failed:
            await asyncio.to_thread(keys, bad)
        assert failed.value.status_code == 400 and says in str(failed.value.text)


async def test_search_endpoints_differ_between_cloud_and_server() -> None:
    async with FakeJira(cloud=True) as cloud, FakeJira() as server:
        for fake, path, status in [(cloud, "search", 410), (server, "search/jql", 404)]:
            url, auth = f"{fake.base_url}/rest/api/2/{path}", (fake.user or "", fake.token)
            answer = await asyncio.to_thread(requests.get, url, auth=auth, timeout=5)
            assert answer.status_code == status


async def test_anonymous_and_wrong_credentials(fake: FakeJira) -> None:
    def get(path: str, auth: tuple[str, str] | None) -> requests.Response:
        return requests.get(f"{fake.base_url}/rest/api/2/{path}", auth=auth, timeout=5)

    assert (await run(lambda: get("serverInfo", None))).status_code == 200
    refused = await run(lambda: get("myself", None))
    wrong = await run(lambda: get("serverInfo", ("bot@example.com", "nope")))

    for answer in (refused, wrong):
        assert answer.status_code == 401
        assert answer.json() == {
            "errorMessages": ["Client must be authenticated to access this resource."],
            "errors": {},
        }
        assert answer.headers["X-Seraph-LoginReason"] == "AUTHENTICATED_FAILED"
    assert [r.status for r in fake.requests] == [200, 401, 401]


async def test_lost_answer_still_creates(fake: FakeJira) -> None:
    fake.drop_response_after_create(status=504)

    with pytest.raises(JIRAError) as failed:
        await run(lambda: connect(fake).create_issue(fields=TASK, prefetch=False))

    assert failed.value.status_code == 504
    assert list(fake.issues) == ["OPS-1"]
    assert [r.status for r in fake.calls("POST")] == [504]
