"""FakeGitHub against the real PyGithub client.

PyGithub is synchronous and the fake serves from this test's event loop, so every PyGithub
call runs in a worker thread (asyncio.to_thread); called on the loop it would deadlock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import github
import pytest
import requests

from .github_api import FakeGitHub

REPO = "acme/api"
T = TypeVar("T")


def client(fake: FakeGitHub, token: str | None = "t", **kwargs: Any) -> github.Github:  # noqa: S107
    # PyGithub sleeps 0.25 s between requests and 1 s between writes by default; tests
    # turn that off. Everything else (retry, laziness) stays at PyGithub's defaults.
    kwargs.setdefault("seconds_between_requests", None)
    kwargs.setdefault("seconds_between_writes", None)
    auth = github.Auth.Token(token) if token else None
    return github.Github(base_url=fake.base_url, auth=auth, **kwargs)


async def run(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as fake:
        fake.add_repo(REPO)
        yield fake


@pytest.fixture
async def repo(gh: FakeGitHub) -> github.Repository.Repository:
    # An eager client: objects come back complete, so reading their attributes on the loop
    # is safe. With lazy=True even attribute access may fetch, and would deadlock there.
    found = await run(lambda: client(gh).get_repo(REPO))
    gh.clear_requests()
    return found


async def test_resolves_branches_tags_and_shas(
    gh: FakeGitHub, repo: github.Repository.Repository
) -> None:
    shas = gh.linear_history(REPO, 4, tag_every=2)  # v1 = shas[1], v2 = shas[3]

    tag = await run(lambda: repo.get_git_ref("tags/v1"))
    assert (tag.ref, tag.object.sha, tag.object.type) == ("refs/tags/v1", shas[1], "commit")
    assert (await run(lambda: repo.get_git_ref("heads/main"))).object.sha == shas[3]
    assert (await run(lambda: repo.get_commit("v1"))).sha == shas[1]
    assert (await run(lambda: repo.get_commit("heads/main"))).sha == shas[3]  # sent as %2F
    assert (await run(lambda: repo.get_commit(shas[0][:7]))).sha == shas[0]
    assert (await run(lambda: repo.get_branch("main"))).commit.sha == shas[3]
    matching = await run(lambda: [r.ref for r in repo.get_git_matching_refs("tags/")])
    assert matching == ["refs/tags/v1", "refs/tags/v2"]
    assert await run(lambda: [(t.name, t.commit.sha) for t in repo.get_tags()]) == [
        ("v2", shas[3]),
        ("v1", shas[1]),
    ]
    commit = await run(lambda: repo.get_commit(shas[2]))
    assert commit.commit.message == "change 3" and commit.parents[0].sha == shas[1]
    assert [r.path for r in gh.requests(path_contains="/git/ref/")] == [
        "/repos/acme/api/git/ref/tags/v1",
        "/repos/acme/api/git/ref/heads/main",
    ]


async def test_unknown_repo_and_refs_are_404s(
    gh: FakeGitHub, repo: github.Repository.Repository
) -> None:
    gh.linear_history(REPO, 1)
    for call in (
        lambda: repo.get_git_ref("tags/v9"),
        lambda: repo.compare("main", "v9"),
        lambda: client(gh).get_repo("acme/nope"),
    ):
        with pytest.raises(github.UnknownObjectException) as err:
            await run(call)
        assert err.value.status == 404 and err.value.data["message"] == "Not Found"
    assert {r.status for r in gh.requests()} == {404}


async def test_get_commit_of_unknown_ref_is_422_as_on_github(
    gh: FakeGitHub, repo: github.Repository.Repository
) -> None:
    # Not an UnknownObjectException: code resolving refs via get_commit must catch 422 too.
    with pytest.raises(github.GithubException) as err:
        await run(lambda: repo.get_commit("v9"))
    assert not isinstance(err.value, github.UnknownObjectException)
    assert (err.value.status, err.value.data["message"]) == (422, "No commit found for SHA: v9")


async def test_combined_status_and_check_runs(
    gh: FakeGitHub, repo: github.Repository.Repository
) -> None:
    green, red, fresh = gh.linear_history(REPO, 3)
    gh.set_status(REPO, green, "failure", "lint")
    gh.set_status(REPO, green, "success", "lint")  # a re-run: the newest per context counts
    gh.set_status(REPO, green, "success", "ci/build", target_url="https://ci/1")
    gh.set_status(REPO, red, "success", "ci/build")
    gh.set_status(REPO, red, "error", "lint")
    gh.add_check_run(REPO, green, "tests", "completed", "failure")
    gh.add_check_run(REPO, green, "tests", "completed", "success")
    gh.add_check_run(REPO, green, "e2e", "in_progress", None)

    combined = await run(lambda: repo.get_commit(green).get_combined_status())
    assert (combined.state, combined.total_count, combined.sha) == ("success", 2, green)
    assert {(s.context, s.state) for s in combined.statuses} == {
        ("lint", "success"),
        ("ci/build", "success"),
    }
    assert (await run(lambda: repo.get_commit(red).get_combined_status())).state == "failure"
    assert (await run(lambda: repo.get_commit(fresh).get_combined_status())).state == "pending"

    runs = await run(lambda: [(c.name, c.status, c.conclusion) for c in
                              repo.get_commit(green).get_check_runs()])
    assert runs == [("tests", "completed", "success"), ("e2e", "in_progress", None)]
    every = await run(lambda: repo.get_commit(green).get_check_runs(filter="all").totalCount)
    assert every == 3
    done = await run(lambda: list(repo.get_commit(green).get_check_runs(status="completed")))
    assert [c.name for c in done] == ["tests"]


async def test_compare_two_tags_for_a_changelog(
    gh: FakeGitHub, repo: github.Repository.Repository
) -> None:
    shas = gh.linear_history(REPO, 6, tag_every=2)  # v1, v2, v3 at shas[1], [3], [5]
    gh.add_commit(REPO, message="fix: null deref\n\nlong body", author="Ada", login="ada")
    gh.set_ref(REPO, "tags/v4", gh.repo(REPO).refs["heads/main"])

    cmp = await run(lambda: repo.compare("v1", "v4"))
    assert (cmp.status, cmp.ahead_by, cmp.behind_by, cmp.total_commits) == ("ahead", 5, 0, 5)
    assert cmp.merge_base_commit.sha == shas[1]
    log = await run(lambda: [(c.sha, c.commit.message, c.commit.author.name) for c in cmp.commits])
    assert [m for _, m, _ in log] == [
        "change 3", "change 4", "change 5", "change 6", "fix: null deref\n\nlong body"
    ]
    assert log[0][0] == shas[2] and log[-1][2] == "Ada"
    # Walking a paginated list is I/O, so it belongs in the worker thread too.
    newest = await run(lambda: cmp.commits.reversed[0])
    assert newest.author.login == "ada" and newest.html_url.endswith(f"/commit/{newest.sha}")
    assert newest.commit.author.date.year == 2024

    back = await run(lambda: repo.compare("v3", "v1"))
    assert (back.status, back.ahead_by, back.behind_by) == ("behind", 0, 4)
    assert (await run(lambda: repo.compare("v2", "v2"))).status == "identical"
    hotfix = gh.add_commit(REPO, message="hotfix", parents=[shas[1]])
    diverged = await run(lambda: repo.compare("v2", hotfix))
    assert (diverged.status, diverged.ahead_by, diverged.behind_by) == ("diverged", 1, 2)

    # Big ranges are paged through Link headers; PyGithub follows them transparently.
    gh.clear_requests()
    paged = await run(
        lambda: [c.sha for c in repo.compare("v1", "v4", comparison_commits_per_page=2).commits]
    )
    assert paged == [sha for sha, _, _ in log]
    assert [r.query.get("page") for r in gh.requests()] == ["1", "2", "3"]


async def test_deployment_and_its_statuses_round_trip(
    gh: FakeGitHub, repo: github.Repository.Repository
) -> None:
    shas = gh.linear_history(REPO, 2, tag_every=2)

    def deploy() -> tuple[int, list[str]]:
        dep = repo.create_deployment(
            "v1", environment="production", payload={"version": "v1", "by": "U123"},
            auto_merge=False, required_contexts=[], production_environment=True,
            transient_environment=False, description="deploy v1 from Slack",
        )
        dep.create_status("queued", description="waiting for lock")
        dep.create_status("in_progress", target_url="https://ci/logs/1")
        dep.create_status("success", target_url="https://ci/logs/1", environment_url="https://api")
        again = repo.get_deployment(dep.id)
        assert (again.sha, again.ref, again.task, again.environment) == (
            shas[1], "v1", "deploy", "production",
        )
        assert again.payload == {"version": "v1", "by": "U123"}
        assert again.production_environment and not again.transient_environment
        assert again.creator.login == "chatops-bot"
        latest = again.get_statuses()[0]  # newest first, as GitHub lists them
        assert (latest.log_url, latest.target_url) == ("https://ci/logs/1",) * 2
        assert latest.environment_url == "https://api"
        return dep.id, [s.state for s in again.get_statuses()]

    dep_id, states = await run(deploy)
    assert states == ["success", "in_progress", "queued"]
    (dep,) = gh.deployments(REPO)
    assert (dep.id, dep.description, dep.auto_merge, dep.required_contexts) == (
        dep_id, "deploy v1 from Slack", False, [],
    )
    assert [s.state for s in gh.deployment_statuses(REPO, dep_id)] == [
        "queued", "in_progress", "success"
    ]
    post = gh.requests("POST", "/deployments")[0]  # the create; later ones are /statuses
    assert post.body["auto_merge"] is False and post.body["required_contexts"] == []
    assert post.headers["Authorization"] == "token t"

    found = await run(lambda: [d.id for d in repo.get_deployments(environment="production")])
    assert found == [dep_id]
    assert await run(lambda: repo.get_deployments(environment="staging").totalCount) == 0


async def test_success_retires_older_non_production_deployments(
    gh: FakeGitHub, repo: github.Repository.Repository
) -> None:
    gh.linear_history(REPO, 1)

    def ship(env: str, production: bool) -> int:
        dep = repo.create_deployment("main", environment=env, auto_merge=False,
                                     required_contexts=[], production_environment=production)
        dep.create_status("success")
        return dep.id

    old_staging = await run(lambda: ship("staging", False))
    old_prod = await run(lambda: ship("production", True))
    await run(lambda: ship("staging", False))
    await run(lambda: ship("production", True))
    # GitHub's auto_inactive only touches non-production environments.
    assert [s.state for s in gh.deployment_statuses(REPO, old_staging)] == ["success", "inactive"]
    assert [s.state for s in gh.deployment_statuses(REPO, old_prod)] == ["success"]


async def test_invalid_deployments_are_refused_like_github(
    gh: FakeGitHub, repo: github.Repository.Repository
) -> None:
    old, head = gh.linear_history(REPO, 2)
    gh.set_ref(REPO, "tags/v1", old)
    gh.set_status(REPO, head, "failure", "ci/build")

    async def refused(fn: Callable[[], object]) -> github.GithubException:
        with pytest.raises(github.GithubException) as err:
            await run(fn)
        return err.value

    err = await refused(lambda: repo.create_deployment("nope", auto_merge=False))
    assert (err.status, err.data["message"]) == (422, "No ref found for: nope")
    # Omitted required_contexts means "every context must be green".
    err = await refused(lambda: repo.create_deployment("main", auto_merge=False))
    assert err.status == 409 and err.data["errors"][0]["contexts"] == [
        {"context": "ci/build", "state": "failure"}
    ]
    # auto_merge defaults to true, and v1 is behind main.
    err = await refused(lambda: repo.create_deployment("v1", required_contexts=[]))
    assert (err.status, err.data["message"]) == (409, "Conflict merging main into v1.")
    dep = await run(lambda: repo.create_deployment("v1", auto_merge=False, required_contexts=[]))
    err = await refused(lambda: dep.create_status("done"))
    assert err.status == 422 and err.data["errors"][0]["field"] == "state"
    assert [r.status for r in gh.requests("POST")] == [422, 409, 409, 201, 422]


async def test_tokens_are_checked(gh: FakeGitHub) -> None:
    with pytest.raises(github.BadCredentialsException):
        await run(lambda: client(gh, token="wrong").get_repo(REPO))
    with pytest.raises(github.GithubException) as err:
        await run(lambda: client(gh, token=None).get_repo(REPO))
    assert (err.value.status, err.value.data["message"]) == (401, "Requires authentication")
    gh.tokens = None  # any token
    assert (await run(lambda: client(gh, token="anything").get_repo(REPO))).full_name == REPO


async def test_injected_502_and_pygithub_retries(gh: FakeGitHub) -> None:
    # Without retries the 502 surfaces at once as GithubException.
    gh.fail("/repos/acme/api", 502)
    with pytest.raises(github.GithubException) as err:
        await run(lambda: client(gh, retry=None).get_repo(REPO))
    assert err.value.status == 502 and len(gh.requests()) == 1

    # By default (GithubRetry: total=10, no backoff) PyGithub retries 5xx, GET and POST alike,
    # so a short outage is invisible to the caller...
    gh.clear_requests()
    gh.fail("/repos/acme/api", 502, times=3)
    assert (await run(lambda: client(gh).get_repo(REPO))).full_name == REPO
    assert [r.status for r in gh.requests()] == [502, 502, 502, 200]

    # ...and a long one ends in requests' RetryError after 11 tries, not in GithubException.
    gh.clear_requests()
    gh.fail("/repos/acme/api", 503, times=None)
    with pytest.raises(requests.exceptions.RetryError):
        await run(lambda: client(gh).get_repo(REPO))
    assert len(gh.requests()) == 11
    gh.heal()
    assert (await run(lambda: client(gh).get_repo(REPO))).full_name == REPO


async def test_lost_answer_to_a_post_makes_a_duplicate_deployment(
    gh: FakeGitHub, repo: github.Repository.Repository
) -> None:
    gh.linear_history(REPO, 1)
    gh.fail("/deployments", 502, method="POST", after=True)
    await run(lambda: repo.create_deployment("main", auto_merge=False, required_contexts=[]))
    # GitHub did create the first one; PyGithub's retry of the POST made a second.
    assert len(gh.deployments(REPO)) == 2


async def test_delay_and_wait_for(gh: FakeGitHub, repo: github.Repository.Repository) -> None:
    gh.linear_history(REPO, 1)
    gh.delay("/status", 0.3)

    def slow_bot() -> str:
        state = repo.get_commit("main").get_combined_status().state
        dep = repo.create_deployment("main", auto_merge=False, required_contexts=[])
        dep.create_status("in_progress")
        dep.create_status("success")
        return state

    started = time.monotonic()
    bot = asyncio.create_task(run(slow_bot))
    (done,) = await gh.wait_for(
        "POST", "/statuses", where=lambda r: r.body["state"] == "success", timeout=5
    )
    assert done.status == 201 and await bot == "pending"
    assert time.monotonic() - started >= 0.3
    with pytest.raises(TimeoutError, match="no 1x DELETE"):
        await gh.wait_for("DELETE", timeout=0.05)


async def test_lists_follow_link_pagination(gh: FakeGitHub) -> None:
    gh.linear_history(REPO, 45, tag_every=1)
    tags = await run(lambda: [t.name for t in client(gh).get_repo(REPO).get_tags()])
    assert len(tags) == 45 and tags[0] == "v45"
    assert [r.query.get("page") for r in gh.requests("GET", "/tags")] == [None, "2"]
    total = await run(lambda: client(gh, per_page=20).get_repo(REPO).get_tags().totalCount)
    assert total == 45


async def test_pygithub_is_eager_unless_lazy(gh: FakeGitHub) -> None:
    gh.linear_history(REPO, 1)
    lazy = client(gh, lazy=True)
    commit = lazy.get_repo(REPO).get_commit("main")  # builds URLs only: safe on the loop
    assert gh.requests() == []
    assert (await run(lambda: commit.commit.message)) == "change 1"
    assert [r.path for r in gh.requests()] == ["/repos/acme/api/commits/main"]
    gh.clear_requests()
    await run(lambda: client(gh).get_repo(REPO).get_commit("main"))
    assert len(gh.requests()) == 2  # the default client fetches each object as it is built
