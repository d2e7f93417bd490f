"""Two bot processes on one database: one deploy per service and environment
at a time, and each step of it runs once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlmodel import col, select

from bot.app import BotApp
from bot.core.config import Config
from bot.core.db import Database
from bot.deploys.models import Deployment
from bot.runtime import build_runtime
from integrations.github import GitHubClient
from integrations.kubernetes import KubeClusters
from integrations.prometheus import PrometheusClient
from sandbox import RunningSandbox
from tests.conftest import SIGNING_SECRET, DbTarget, bot_settings, eventually
from tests.deploys.conftest import GITHUB_TOKEN
from tests.fakes.github_api import FakeGitHub
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import SlackRequester


async def test_two_bots_one_deploy_and_one_patch(
    db_target: DbTarget, db: Database, slack: FakeSlack, config: Config,
    cluster: RunningSandbox, github: FakeGitHub, tmp_path: Path,
) -> None:
    kubeconfig = str(cluster.write_kubeconfig(tmp_path / "kubeconfig"))
    runtimes = []
    for name in ("replica-a", "replica-b"):
        # Each replica has its own engine and connection pool, as two processes would.
        bot = BotApp(bot_settings(slack, db_target, CHATOPS_INSTANCE_ID=name), config,
                     db=db_target.database(), outbox_rate=50, scheduler_poll=0.02,
                     clusters=KubeClusters(kubeconfig),
                     scm=GitHubClient(GITHUB_TOKEN, github.base_url, gentle=False),
                     metrics_source=PrometheusClient(cluster.prometheus_url))
        runtime = build_runtime(bot)
        await runtime.start("127.0.0.1", 0)
        runtimes.append(runtime)
    try:
        clients = [SlackRequester(r.url or "", SIGNING_SECRET) for r in runtimes]
        names = ["a", "b", "c", "d"]
        await asyncio.gather(*(
            clients[i % 2].command("/deploy", "cart v2 to staging", user="UALICE",
                                   response_url=slack.response_url(n))
            for i, n in enumerate(names)))
        replies = await slack.wait_for("response_url", count=4, timeout=15)
        started = [c for c in replies if c.body["text"].startswith("Deploy #")]
        refused = [c for c in replies if c not in started]
        assert len(started) == 1, [c.body["text"] for c in replies]
        assert all("cart" in c.body["text"] and ("still" in c.body["text"]
                   or "a moment ago" in c.body["text"]) for c in refused)

        async def done() -> bool:
            async with db.transaction() as s:
                rows = (await s.exec(select(Deployment))).all()
            return len(rows) == 1 and rows[0].state == "Completed"

        await eventually(done, timeout=30)
        patches = [r for r in cluster.requests.matching("PATCH", "/deployments/cart")
                   if "/scale" not in r.path]
        assert len(patches) == 1, [r.path for r in patches]
        async with db.transaction() as s:
            active = (await s.exec(select(Deployment).where(col(Deployment.active)))).all()
        assert active == []
    finally:
        for r in runtimes:
            await r.stop()
