"""Paging latency: from an Alertmanager notification reaching the bot to the
page's chat.postMessage arriving at Slack (the fake), p50/p99 over many
alerts, one at a time. Baseline in the same run: a direct slack-sdk
chat.postMessage to the same fake (the transport's own cost).

The outbox's per-channel rate (1/s in production) is raised here: one person
paged 200 times a second apart would measure Slack's limit, not the bot.

    .venv/bin/python bench/page_latency.py [--alerts 200] [--database URL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slack_sdk.web.async_client import AsyncWebClient  # noqa: E402

from bot.app import BotApp  # noqa: E402
from bot.core.config import Config  # noqa: E402
from bot.core.settings import Settings  # noqa: E402
from bot.runtime import build_runtime  # noqa: E402
from tests.fakes.slack_api import Call, FakeSlack  # noqa: E402
from tests.incidents.conftest import alert, notification  # noqa: E402

TOKEN = "bench-token"


def config() -> Config:
    data: dict[str, Any] = {
        **yaml.safe_load((ROOT / "tests/data/config.yaml").read_text()),
        **yaml.safe_load((ROOT / "tests/data/oncall.yaml").read_text()),
    }
    data["oncall"]["rate_limit"] = {"pages": 100000, "window": "15m"}
    return Config.model_validate(data)


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--alerts", type=int, default=200)
    p.add_argument("--database", default=None)
    args = p.parse_args()
    database = args.database or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/pages.db"
    async with FakeSlack() as slack:
        direct = AsyncWebClient(token="xoxb-bench", base_url=slack.base_url)
        baseline = []
        for _ in range(args.alerts):
            started = time.perf_counter()
            await direct.chat_postMessage(channel="UBENCH", text="baseline")
            baseline.append(time.perf_counter() - started)
        settings = Settings(
            SLACK_BOT_TOKEN="xoxb-bench",
            SLACK_SIGNING_SECRET="s",
            SLACK_API_URL=slack.base_url,
            DATABASE_URL=database,
            CHATOPS_WEBHOOK_TOKEN=TOKEN,
            CHATOPS_LOG_LEVEL="ERROR",
        )
        bot = BotApp(
            settings, config(), outbox_rate=1000, outbox_burst=100, scm=None, metrics_source=None
        )
        if not database.startswith("sqlite"):
            await bot.db.upgrade()
        runtime = build_runtime(bot)
        await runtime.start("127.0.0.1", 0)
        latencies = []
        try:
            async with aiohttp.ClientSession() as http:
                for i in range(args.alerts):
                    body = notification(
                        [alert(f"Bench{i}", severity="page")],
                        group_key=f'{{}}:{{alertname="Bench{i}"}}',
                    )
                    started = time.monotonic()
                    async with http.post(
                        f"{runtime.url}/webhooks/alertmanager",
                        json=body,
                        headers={"Authorization": f"Bearer {TOKEN}"},
                    ) as r:
                        assert r.status == 200
                    ref = f"INC-{i + 1} "

                    def is_page(c: Call, ref: str = ref) -> bool:
                        return c.ok and c.body["channel"] == "UALICE" and ref in c.body["text"]

                    [call] = await slack.wait_for(
                        "chat.postMessage",
                        is_page,
                        timeout=10,
                    )
                    latencies.append(call.time - started)
        finally:
            await runtime.stop()
    print(f"{args.alerts} SEV1 alerts, one at a time, database {database.split(':')[0]}")
    print(f"{'':34}{'p50 ms':>9}{'p99 ms':>9}")
    print(f"{'webhook → page DM at Slack':34}{pct(latencies, 50):9.1f}{pct(latencies, 99):9.1f}")
    print(
        f"{'baseline: one direct postMessage':34}{pct(baseline, 50):9.1f}{pct(baseline, 99):9.1f}"
    )
    print(
        f"ratio p50 {pct(latencies, 50) / pct(baseline, 50):.1f}x, "
        f"p99 {pct(latencies, 99) / pct(baseline, 99):.1f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
