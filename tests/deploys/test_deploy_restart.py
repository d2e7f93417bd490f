"""A deploy survives its bot: SIGKILL during a canary step, start again, and
it ends Completed or RolledBack from its stored state, never stuck."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from bot.deploys.models import Deployment
from sandbox import RunningSandbox
from tests.conftest import DATA, SIGNING_SECRET, DbTarget, eventually
from tests.deploys.conftest import GITHUB_TOKEN
from tests.fakes.github_api import FakeGitHub
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import SlackRequester
from tests.test_crash_recovery import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[2]


def start_bot(target: DbTarget, slack: FakeSlack, github: FakeGitHub, cluster: RunningSandbox,
              kubeconfig: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_"))}
    env.update(target.env())
    env.update({"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": slack.base_url, "CHATOPS_CONFIG": str(DATA / "config.yaml"),
                "KUBECONFIG": str(kubeconfig), "PROMETHEUS_URL": cluster.prometheus_url,
                "GITHUB_TOKEN": GITHUB_TOKEN, "GITHUB_API_URL": github.base_url,
                "CHATOPS_JOB_LEASE_SECONDS": "3", "CHATOPS_LOG_LEVEL": "WARNING"})
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def read(target: DbTarget, deployment_id: int) -> Deployment | None:
    db = target.database()
    try:
        async with db.transaction() as s:
            return await s.get(Deployment, deployment_id)
    finally:
        await db.dispose()


async def test_sigkill_during_a_canary_step_then_resume(
    db_target: DbTarget, db: object, slack: FakeSlack, github: FakeGitHub,
    cluster: RunningSandbox, tmp_path: Path,
) -> None:
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_bot(db_target, slack, github, cluster, kubeconfig, port)
    try:
        await wait_ready(url)
        await SlackRequester(url, SIGNING_SECRET).command("/deploy", "checkout v2 to staging")

        async def in_canary() -> bool:
            d = await read(db_target, 1)
            return d is not None and d.state in ("HealthGating", "RollingOut") \
                and "step" in d.progress

        await eventually(in_canary, timeout=20, interval=0.02)
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)
        killed_in = (await read(db_target, 1))
        assert killed_in is not None and not killed_in.deploy_state.terminal
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = start_bot(db_target, slack, github, cluster, kubeconfig, port)
    try:
        await wait_ready(url)

        async def finished() -> bool:
            d = await read(db_target, 1)
            return d is not None and d.state in ("Completed", "RolledBack")

        await eventually(finished, timeout=60, interval=0.1)
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 15)
    d = await read(db_target, 1)
    assert d is not None, "the deployment record is gone"
    assert d.state == "Completed", (d.state, d.error)
    assert cluster.deployment_image("shop-staging", "checkout") == \
        "registry.example.com/shop/checkout:v2"
