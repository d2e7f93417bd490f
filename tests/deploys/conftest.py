"""Deploy fixtures: a sandbox cluster seeded from the test config, the fake
GitHub, and a running bot wired to both through the real client libraries."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.app import BotApp
from bot.core.config import Config
from bot.core.db import Database
from bot.deploys.models import Deployment
from bot.runtime import build_runtime
from bot.sandbox_seed import sandbox_config
from integrations.github import GitHubClient
from integrations.kubernetes import KubeClusters
from integrations.prometheus import PrometheusClient
from sandbox import RunningSandbox, start_sandbox
from tests.conftest import SIGNING_SECRET, DbTarget, RunningBot, bot_settings, eventually
from tests.fakes.github_api import FakeGitHub
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import SlackRequester

GITHUB_TOKEN = "t"


@pytest.fixture
async def cluster(config: Config) -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(sandbox_config(config, fast=True), seed=3)
    try:
        await running.wait_until(lambda: _all_available(running), timeout=15)
        yield running
    finally:
        await running.stop()


def _all_available(running: RunningSandbox) -> bool:
    from sandbox.resources import DEPLOYMENTS

    return all(
        (d.get("status") or {}).get("availableReplicas", 0) == d["spec"]["replicas"]
        for d in running.store.list(DEPLOYMENTS)
    )


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(tokens=[GITHUB_TOKEN]) as fake:
        for repo in ("example-shop/checkout", "example-shop/cart", "example-shop/search"):
            fake.add_repo(repo)
            for tag in ("v1", "v2", "v3", "v2-bad", "v2-crash", "v2-slow", "v2-meh"):
                release(fake, repo, tag)
        yield fake


def release(fake: FakeGitHub, repo: str, tag: str, *, green: bool = True) -> str:
    sha = fake.add_commit(repo, message=f"Release {tag}", author="Dev Eloper")
    fake.set_ref(repo, f"tags/{tag}", sha)
    fake.set_status(repo, sha, "success" if green else "failure", "ci/build")
    return sha


@dataclass
class DeployBot(RunningBot):
    cluster: RunningSandbox
    github: FakeGitHub

    async def deployment(self, deployment_id: int) -> Deployment:
        async with self.bot.db.transaction() as s:
            d = await s.get(Deployment, deployment_id)
        assert d is not None
        return d

    async def latest(self) -> Deployment:
        async with self.bot.db.transaction() as s:
            rows = (await s.exec(select(Deployment).order_by(col(Deployment.id).desc()))).all()
        return rows[0]

    async def wait_state(self, deployment_id: int, *states: str, timeout: float = 30) -> Deployment:
        async def reached() -> bool:
            return (await self.deployment(deployment_id)).state in states

        await eventually(reached, timeout=timeout, interval=0.05)
        return await self.deployment(deployment_id)

    async def delivered(self, timeout: float = 10) -> None:
        """Wait until everything the bot queued has reached the fake Slack."""

        async def empty() -> bool:
            messages, _jobs = await self.bot.pending_work(timedelta(0))
            return messages == 0

        await eventually(empty, timeout=timeout)

    def image(self, name: str, env: str = "staging") -> str | None:
        return self.cluster.deployment_image(f"shop-{env}", name)

    async def say(self, command: str, text: str, user: str = "UALICE") -> str:
        """Run a slash command over signed HTTP; return the reply's text."""
        name = f"r{len(self.slack.calls())}-{command}"
        await self.requests.command(
            command, text, user=user, response_url=self.slack.response_url(name)
        )
        [call] = await self.slack.wait_for("response_url", lambda c: c.name == name, timeout=15)
        return str(call.body["text"])


@pytest.fixture
async def deploy_bot(
    db: Database,
    db_target: DbTarget,
    slack: FakeSlack,
    config: Config,
    cluster: RunningSandbox,
    github: FakeGitHub,
    tmp_path: Path,
) -> AsyncIterator[DeployBot]:
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    clusters = KubeClusters(str(kubeconfig))
    scm = GitHubClient(GITHUB_TOKEN, github.base_url, gentle=False)
    bot = BotApp(
        bot_settings(slack, db_target),
        config,
        db=db,
        outbox_rate=50.0,
        outbox_burst=20,
        scheduler_poll=0.05,
        clusters=clusters,
        scm=scm,
        metrics_source=PrometheusClient(cluster.prometheus_url),
    )
    runtime = build_runtime(bot)
    await runtime.start("127.0.0.1", 0)
    assert runtime.url is not None
    try:
        requester = SlackRequester(runtime.url, SIGNING_SECRET)
        yield DeployBot(runtime, slack, requester, cluster, github)
    finally:
        await runtime.stop()
        await clusters.close()
        await scm.close()


Predicate = Callable[[], bool]
