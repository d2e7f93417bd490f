"""Alert storm throughput: 10,000 alerts in 200 groups posted concurrently.

Prints alerts/s until every notification is acknowledged (stored) and until
every alert is processed into incidents, next to a baseline in the same run:
a bare aiohttp endpoint that only parses and validates the same payloads.

    .venv/bin/python bench/alert_storm.py [--database URL] [--groups 200 --per-group 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func  # noqa: E402
from sqlmodel import col, select  # noqa: E402

from bot.app import BotApp  # noqa: E402
from bot.core.config_loader import load_config  # noqa: E402
from bot.core.settings import Settings  # noqa: E402
from bot.incidents.models import AlertNotification  # noqa: E402
from bot.runtime import build_runtime  # noqa: E402
from integrations.alertmanager import WebhookPayload  # noqa: E402
from tests.fakes.slack_api import FakeSlack  # noqa: E402
from tests.incidents.conftest import alert, notification  # noqa: E402

TOKEN = "bench-token"


async def blast(url: str, bodies: list[bytes], concurrency: int) -> float:
    semaphore = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        async def one(body: bytes) -> None:
            async with semaphore, http.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}")

        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return time.perf_counter() - started


async def baseline(bodies: list[bytes], concurrency: int) -> float:
    async def handle(request: web.Request) -> web.Response:
        WebhookPayload.model_validate(json.loads(await request.read()))
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        return await blast(f"http://127.0.0.1:{port}/hook", bodies, concurrency)
    finally:
        await runner.cleanup()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--database", default=None, help="default: a temporary SQLite file")
    p.add_argument("--groups", type=int, default=200)
    p.add_argument("--per-group", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=50)
    args = p.parse_args()
    bodies = [json.dumps(notification(
        [alert(f"Storm{g}", instance=f"i{i}", service="cart") for i in range(args.per_group)],
        group_key=f'{{}}:{{alertname="Storm{g}"}}')).encode() for g in range(args.groups)]
    total = args.groups * args.per_group
    base = await baseline(bodies, args.concurrency)
    database = args.database or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/storm.db"
    config = load_config(ROOT / "tests" / "data" / "config.yaml", env={})
    async with FakeSlack() as slack:
        settings = Settings(SLACK_BOT_TOKEN="xoxb-bench", SLACK_SIGNING_SECRET="s",
                            SLACK_API_URL=slack.base_url, DATABASE_URL=database,
                            CHATOPS_WEBHOOK_TOKEN=TOKEN, CHATOPS_LOG_LEVEL="ERROR")
        bot = BotApp(settings, config, scm=None, metrics_source=None)
        if not database.startswith("sqlite"):
            await bot.db.upgrade()
        runtime = build_runtime(bot)
        await runtime.start("127.0.0.1", 0)
        try:
            started = time.perf_counter()
            acked = await blast(f"{runtime.url}/webhooks/alertmanager", bodies, args.concurrency)
            while True:
                async with bot.db.transaction() as s:
                    left = (await s.exec(select(func.count()).select_from(AlertNotification)
                                         .where(col(AlertNotification.processed_at).is_(None)))
                            ).one()
                if left == 0:
                    break
                await asyncio.sleep(0.05)
            processed = time.perf_counter() - started
        finally:
            await runtime.stop()
    print(f"{total} alerts in {args.groups} groups, concurrency {args.concurrency}, "
          f"database {database.split(':')[0]}")
    print(f"baseline (parse + validate only): {total / base:10.0f} alerts/s")
    print(f"bot, stored and acknowledged:     {total / acked:10.0f} alerts/s "
          f"(takes {acked / base:.1f}x the baseline's time)")
    print(f"bot, processed into incidents:    {total / processed:10.0f} alerts/s "
          f"({processed:.1f} s in all)")


if __name__ == "__main__":
    asyncio.run(main())
