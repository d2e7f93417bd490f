"""Rollback speed: time from a signed `/rollback` reaching the bot to the
image PATCH arriving at the (sandbox) Kubernetes API server, next to the wall
time of `kubectl rollout undo` against the same server, in the same run.

    .venv/bin/python bench/rollback.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.app import BotApp  # noqa: E402
from bot.core.config_loader import load_config  # noqa: E402
from bot.core.settings import Settings  # noqa: E402
from bot.runtime import build_runtime  # noqa: E402
from bot.sandbox_seed import sandbox_config  # noqa: E402
from integrations.kubernetes import KubeClusters  # noqa: E402
from sandbox import start_sandbox  # noqa: E402
from tests.fakes.slack_api import FakeSlack  # noqa: E402
from tests.fakes.slack_requests import SlackRequester  # noqa: E402

SECRET = "bench-signing-secret"


async def wait_patch(sandbox: object, since: int, timeout: float = 10.0) -> float:
    log = sandbox.requests  # type: ignore[attr-defined]
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        for entry in log.entries[since:]:
            if entry.method == "PATCH" and entry.path.endswith("/deployments/cart"):
                return time.perf_counter()
        await asyncio.sleep(0.0005)
    raise TimeoutError("no PATCH arrived")


async def kubectl_undo(kubeconfig: Path) -> float:
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        "--kubeconfig",
        str(kubeconfig),
        "-n",
        "shop-staging",
        "rollout",
        "undo",
        "deploy/cart",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(err.decode())
    return time.perf_counter() - started


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    config = load_config(ROOT / "tests" / "data" / "config.yaml", env={})
    tmp = Path(tempfile.mkdtemp(prefix="chatops-rollback-"))
    sandbox = await start_sandbox(sandbox_config(config, fast=True))
    kubeconfig = sandbox.write_kubeconfig(tmp / "kubeconfig")
    async with FakeSlack() as slack:
        settings = Settings(
            SLACK_BOT_TOKEN="xoxb-bench",
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=slack.base_url,
            DATABASE_URL=f"sqlite+aiosqlite:///{tmp}/bench.db",
        )
        bot = BotApp(
            settings,
            config,
            clusters=KubeClusters(str(kubeconfig)),
            scm=None,
            metrics_source=None,
            outbox_rate=100,
            scheduler_poll=0.02,
        )
        runtime = build_runtime(bot)
        await runtime.start("127.0.0.1", 0)
        requests = SlackRequester(runtime.url or "", SECRET)
        bot_times, kubectl_times = [], []
        try:
            for i in range(args.rounds):
                # A completed deploy to roll back from.
                await requests.command("/deploy", f"cart v{i + 2} to staging", user="UALICE")
                await _wait_state(bot, "Completed")
                since = len(sandbox.requests.entries)
                started = time.perf_counter()
                await requests.command("/rollback", "cart in staging", user="UALICE")
                bot_times.append(await wait_patch(sandbox, since) - started)
                await _wait_state(bot, "RolledBack")
                await requests.command("/unlock", "cart staging", user="UALICE")
                await _wait_unlocked(bot)
                kubectl_times.append(await kubectl_undo(kubeconfig))
        finally:
            await runtime.stop()
            await sandbox.stop()
    b, k = statistics.median(bot_times) * 1000, statistics.median(kubectl_times) * 1000
    print(f"rounds: {args.rounds}")
    print(
        f"/rollback → PATCH at the API server   median {b:8.1f} ms"
        f"   (min {min(bot_times) * 1000:.1f}, max {max(bot_times) * 1000:.1f})"
    )
    print(
        f"kubectl rollout undo, wall time        median {k:8.1f} ms"
        f"   (min {min(kubectl_times) * 1000:.1f}, max {max(kubectl_times) * 1000:.1f})"
    )
    print(f"ratio bot / kubectl: {b / k:.2f}")


async def _wait_state(bot: BotApp, state: str) -> None:
    from sqlmodel import col, select

    from bot.deploys.models import Deployment

    for _ in range(2000):
        async with bot.db.transaction() as s:
            d = (await s.exec(select(Deployment).order_by(col(Deployment.id).desc()))).first()
        if d is not None and d.state == state:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"never reached {state}")


async def _wait_unlocked(bot: BotApp) -> None:
    from bot.deploys.models import DeployLock

    for _ in range(1000):
        async with bot.db.transaction() as s:
            if await s.get(DeployLock, ("cart", "staging")) is None:
                return
        await asyncio.sleep(0.01)
    raise TimeoutError("lock not released")


if __name__ == "__main__":
    asyncio.run(main())
