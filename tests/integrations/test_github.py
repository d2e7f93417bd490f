"""GitHubClient against FakeGitHub, through the real PyGithub and real HTTP.

The fake serves from the test's event loop, so these tests also prove the client keeps
PyGithub off the loop: a blocking call there would hang instead of failing.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from integrations.github import Checks, GitHubClient, GitHubError
from tests.fakes.github_api import FakeGitHub

REPO = "acme/api"


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as fake:
        fake.add_repo(REPO)
        yield fake


@pytest.fixture
async def client(gh: FakeGitHub) -> AsyncIterator[GitHubClient]:
    c = GitHubClient("t", gh.base_url, gentle=False, retries=2, backoff=0)
    yield c
    await c.close()


async def deploy(client: GitHubClient, chatops_id: str = "d-1", **kw: Any) -> int:
    args: dict[str, Any] = {"ref": "v1", "environment": "staging", "description": "v1 by ana",
                            "payload": {"chatops_id": chatops_id, "service": "api"},
                            "production": False}
    return await client.create_deployment(REPO, **(args | kw))


# -- resolve -------------------------------------------------------------------------------


async def test_resolve_tag_branch_sha_and_missing(gh: FakeGitHub, client: GitHubClient) -> None:
    shas = gh.linear_history(REPO, 3, tag_every=2)  # v1 = shas[1]
    fix = gh.add_commit(REPO, message="fix: login loop\n\nLong story.", author="Ana Lima")

    v1 = await client.resolve(REPO, "v1")
    assert v1 is not None
    assert (v1.sha, v1.message, v1.author) == (shas[1], "change 2", "Dev Eloper")
    assert v1.date is not None and v1.date.tzinfo is not None
    assert v1.date == datetime(2024, 1, 1, 0, 1, tzinfo=UTC)
    assert v1.url == f"https://github.com/{REPO}/commit/{shas[1]}"

    main = await client.resolve(REPO, "main")
    assert main is not None and (main.sha, main.message, main.author) == (
        fix, "fix: login loop", "Ana Lima")
    assert (await client.resolve(REPO, shas[0])) == (await client.resolve(REPO, shas[0][:7]))
    assert (await client.resolve(REPO, "heads/main")) == main
    assert await client.resolve(REPO, "v9") is None  # GitHub's 422 "No commit found"
    assert await client.resolve("acme/nope", "main") is None  # a 404
    # Lazy PyGithub objects: one request per resolve, no GET /repos/{repo} first.
    gh.clear_requests()
    await client.resolve(REPO, "v1")
    assert [r.path for r in gh.requests()] == [f"/repos/{REPO}/commits/v1"]


# -- checks --------------------------------------------------------------------------------

Seed = Callable[[FakeGitHub, str], None]


def _none(gh: FakeGitHub, sha: str) -> None:
    pass


def _green(gh: FakeGitHub, sha: str) -> None:
    gh.set_status(REPO, sha, "failure", "ci")
    gh.set_status(REPO, sha, "success", "ci")  # newest per context counts
    gh.add_check_run(REPO, sha, "build")
    gh.add_check_run(REPO, sha, "docs", conclusion="skipped")
    gh.add_check_run(REPO, sha, "lint", conclusion="neutral")
    gh.add_check_run(REPO, sha, "flaky", conclusion="failure")
    gh.add_check_run(REPO, sha, "flaky")  # a green re-run supersedes the failure


def _failing_status(gh: FakeGitHub, sha: str) -> None:
    gh.set_status(REPO, sha, "failure", "ci")
    gh.set_status(REPO, sha, "error", "coverage")
    gh.set_status(REPO, sha, "success", "security")
    gh.add_check_run(REPO, sha, "build")


def _failing_run(gh: FakeGitHub, sha: str) -> None:
    gh.set_status(REPO, sha, "success", "ci")
    gh.add_check_run(REPO, sha, "build", conclusion="timed_out")
    gh.add_check_run(REPO, sha, "e2e", conclusion="cancelled")
    gh.add_check_run(REPO, sha, "deps", conclusion="action_required")
    gh.add_check_run(REPO, sha, "lint", status="in_progress")  # failure wins over pending


def _pending(gh: FakeGitHub, sha: str) -> None:
    gh.set_status(REPO, sha, "pending", "ci")
    gh.add_check_run(REPO, sha, "build", status="queued")
    gh.add_check_run(REPO, sha, "unit")


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        (_none, Checks("none", [], [])),
        (_green, Checks("success", [], [])),
        (_failing_status, Checks("failure", ["ci", "coverage"], [])),
        (_failing_run, Checks("failure", ["build", "e2e", "deps"], ["lint"])),
        (_pending, Checks("pending", [], ["ci", "build"])),
    ],
    ids=["none", "green", "failing-status", "failing-check-run", "pending"],
)
async def test_checks(gh: FakeGitHub, client: GitHubClient, seed: Seed, expected: Checks) -> None:
    sha = gh.add_commit(REPO)
    seed(gh, sha)
    got = await client.checks(REPO, sha)
    assert got.state == expected.state
    assert sorted(got.failing) == sorted(expected.failing)
    assert sorted(got.pending) == sorted(expected.pending)


async def test_checks_pages_through_many_statuses(gh: FakeGitHub, client: GitHubClient) -> None:
    sha = gh.add_commit(REPO)
    for i in range(130):
        gh.set_status(REPO, sha, "success", f"ctx-{i:03}")
    gh.set_status(REPO, sha, "failure", "ctx-129")  # the newest context, on page two
    assert (await client.checks(REPO, sha)) == Checks("failure", ["ctx-129"], [])


# -- compare -------------------------------------------------------------------------------


async def test_compare_two_tags(gh: FakeGitHub, client: GitHubClient) -> None:
    shas = gh.linear_history(REPO, 10, tag_every=2)  # v1..v5 = shas[1], [3], [5], [7], [9]
    commits, total = await client.compare(REPO, "v1", "v4", 10)
    assert total == 6
    assert [c.sha for c in commits] == shas[7:1:-1]  # newest first
    assert [c.message for c in commits] == [f"change {n}" for n in range(8, 2, -1)]

    commits, total = await client.compare(REPO, "v1", "v4", 2)
    assert (total, [c.sha for c in commits]) == (6, [shas[7], shas[6]])
    assert await client.compare(REPO, "v2", "v2", 5) == ([], 0)
    assert await client.compare(REPO, "v4", "v1", 5) == ([], 0)  # a rollback: head behind


async def test_compare_fetches_only_the_newest_pages(gh: FakeGitHub, client: GitHubClient) -> None:
    shas = gh.linear_history(REPO, 600)
    gh.clear_requests()
    commits, total = await client.compare(REPO, shas[0], shas[-1], 5)
    assert total == 599
    assert [c.sha for c in commits] == shas[:-6:-1]
    assert [r.query.get("page") for r in gh.requests("GET")] == ["1", "3"]  # not page 2


async def test_compare_unknown_base_gives_head_alone(gh: FakeGitHub, client: GitHubClient) -> None:
    shas = gh.linear_history(REPO, 3)
    commits, total = await client.compare(REPO, "deadbeef" * 5, "main", 10)
    assert (total, [c.sha for c in commits]) == (1, [shas[-1]])
    with pytest.raises(GitHubError) as err:
        await client.compare(REPO, "main", "v404", 10)
    assert err.value.kind == "not_found"


# -- deployments ---------------------------------------------------------------------------


async def test_create_deployment_and_statuses(gh: FakeGitHub, client: GitHubClient) -> None:
    shas = gh.linear_history(REPO, 2, tag_every=1, status="failure")  # the bot gates, not GitHub
    dep_id = await deploy(client, ref="v2", environment="production", production=True)

    [dep] = gh.deployments(REPO)
    assert dep.id == dep_id
    assert (dep.ref, dep.sha, dep.environment, dep.task) == ("v2", shas[1], "production", "deploy")
    assert dep.auto_merge is False and dep.required_contexts == []
    assert dep.production_environment is True and dep.transient_environment is False
    assert dep.payload == {"chatops_id": "d-1", "service": "api"}
    assert dep.description == "v1 by ana"

    await client.set_deployment_status(REPO, dep_id, "queued")
    await client.set_deployment_status(REPO, dep_id, "in_progress", description="rolling out",
                                       log_url="https://chat/log/1")
    await client.set_deployment_status(REPO, dep_id, "success", description="x" * 300,
                                       environment_url="https://api.example.com")
    statuses = gh.deployment_statuses(REPO, dep_id)
    assert [s.state for s in statuses] == ["queued", "in_progress", "success"]
    assert statuses[1].log_url == "https://chat/log/1"
    assert statuses[1].description == "rolling out"
    assert statuses[2].environment_url == "https://api.example.com"
    assert statuses[2].description == "x" * 140  # GitHub's limit
    # get_deployment is lazy: status updates are single POSTs, no GET of the deployment.
    assert not gh.requests("GET", f"/deployments/{dep_id}")


async def test_transient_deployment(gh: FakeGitHub, client: GitHubClient) -> None:
    gh.linear_history(REPO, 1, tag_every=1)
    await deploy(client, environment="pr-12", transient=True)
    [dep] = gh.deployments(REPO)
    assert dep.transient_environment is True and dep.production_environment is False


async def test_create_deployment_is_idempotent(gh: FakeGitHub, client: GitHubClient) -> None:
    gh.linear_history(REPO, 1, tag_every=1)
    first = await deploy(client)
    assert await deploy(client) == first
    assert len(gh.deployments(REPO)) == 1
    assert len(gh.requests("POST", "/deployments")) == 1
    other = await deploy(client, chatops_id="d-2")
    assert other != first and len(gh.deployments(REPO)) == 2


async def test_lost_post_response_creates_one_deployment(
    gh: FakeGitHub, client: GitHubClient
) -> None:
    gh.linear_history(REPO, 1, tag_every=1)
    gh.fail("/deployments", 502, method="POST", after=True)  # created, answer lost
    dep_id = await deploy(client)
    [dep] = gh.deployments(REPO)
    assert dep.id == dep_id
    assert [r.status for r in gh.requests("POST", "/deployments")] == [502]  # not retried


async def test_failed_post_is_not_retried(gh: FakeGitHub, client: GitHubClient) -> None:
    gh.linear_history(REPO, 1, tag_every=1)
    gh.fail("/deployments", 503, method="POST")  # refused before doing anything
    with pytest.raises(GitHubError) as err:
        await deploy(client)
    assert (err.value.kind, err.value.status) == ("unavailable", 503)
    assert len(gh.requests("POST", "/deployments")) == 1
    assert gh.deployments(REPO) == []
    assert await deploy(client) == gh.deployments(REPO)[0].id  # the caller's retry works


async def test_invalid_requests(gh: FakeGitHub, client: GitHubClient) -> None:
    gh.linear_history(REPO, 1, tag_every=1)
    with pytest.raises(GitHubError) as err:
        await deploy(client, ref="no-such-ref")
    assert (err.value.kind, err.value.status) == ("invalid", 422)
    dep_id = await deploy(client)
    with pytest.raises(GitHubError) as err:
        await client.set_deployment_status(REPO, dep_id, "exploded")
    assert err.value.kind == "invalid"
    with pytest.raises(GitHubError) as err:
        await client.set_deployment_status(REPO, 999_999, "success")
    assert err.value.kind == "not_found"


# -- failures ------------------------------------------------------------------------------


async def test_a_502_on_a_get_is_retried(gh: FakeGitHub, client: GitHubClient) -> None:
    shas = gh.linear_history(REPO, 1)
    gh.fail("/commits/", 502)
    found = await client.resolve(REPO, "main")
    assert found is not None and found.sha == shas[0]
    assert [r.status for r in gh.requests("GET", "/commits/")] == [502, 200]


async def test_persistent_5xx_is_unavailable_quickly(gh: FakeGitHub, client: GitHubClient) -> None:
    gh.linear_history(REPO, 1)
    gh.fail("/commits/", 503, times=None)
    started = time.monotonic()
    with pytest.raises(GitHubError) as err:
        await client.resolve(REPO, "main")
    assert (err.value.kind, err.value.status) == ("unavailable", 503)
    assert time.monotonic() - started < 2
    assert len(gh.requests("GET", "/commits/")) == 3  # first try + retries=2


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, "auth"), (403, "auth"), (404, "not_found"), (409, "conflict"), (422, "invalid"),
     (400, "invalid"), (500, "unavailable")],
)
async def test_http_errors_map_to_kinds(
    gh: FakeGitHub, client: GitHubClient, status: int, kind: str
) -> None:
    sha = gh.add_commit(REPO)
    gh.fail("/status", status, times=None)
    with pytest.raises(GitHubError) as err:
        await client.checks(REPO, sha)
    assert (err.value.kind, err.value.status) == (kind, status)


@pytest.mark.parametrize("token", ["wrong", None])
async def test_bad_token_is_auth(gh: FakeGitHub, token: str | None) -> None:
    gh.linear_history(REPO, 1)
    client = GitHubClient(token, gh.base_url, gentle=False, backoff=0)
    with pytest.raises(GitHubError) as err:
        await client.resolve(REPO, "main")
    await client.close()
    assert (err.value.kind, err.value.status) == ("auth", 401)
    assert len(gh.requests()) == 1  # a refusal is not retried


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = GitHubClient("t", f"http://127.0.0.1:{port}", gentle=False, retries=1, backoff=0)
    with pytest.raises(GitHubError) as err:
        await client.resolve(REPO, "main")
    await client.close()
    assert (err.value.kind, err.value.status) == ("unavailable", None)
    assert "requests" not in type(err.value).__module__


async def test_a_timed_out_get_is_retried(gh: FakeGitHub) -> None:
    shas = gh.linear_history(REPO, 1)
    gh.delay("/commits/", 1.5, times=1)
    client = GitHubClient("t", gh.base_url, timeout=1, gentle=False, retries=1, backoff=0)
    found = await client.resolve(REPO, "main")
    await client.close()
    assert found is not None and found.sha == shas[0]


async def test_calls_do_not_block_the_event_loop(gh: FakeGitHub, client: GitHubClient) -> None:
    gh.linear_history(REPO, 1)
    gh.delay("/commits/", 0.3, times=1)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    results = await asyncio.gather(client.resolve(REPO, "main"), client.checks(REPO, "main"))
    ticker.cancel()
    assert results[0] is not None and results[1].state == "none"
    assert ticks >= 10  # the loop ran throughout the 0.3 s the fake held the request


async def test_gentle_spaces_requests_out(gh: FakeGitHub) -> None:
    gh.linear_history(REPO, 1)
    client = GitHubClient("t", gh.base_url)  # production defaults: PyGithub's pauses kept
    await client.resolve(REPO, "main")
    await client.resolve(REPO, "main")
    await client.close()
    first, second = gh.requests()
    assert second.time - first.time >= 0.2  # PyGithub's 0.25 s between requests
