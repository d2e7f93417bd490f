"""Ack latency of signed slash commands at concurrency 100: the bot versus a
bare Bolt app with a no-op handler, measured in the same run so the ratio is
meaningful on a noisy machine. Also prints the bot's start-up time to ready
and its idle RSS.

    .venv/bin/python bench/ack_latency.py [--requests 3000] [--concurrency 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.slack_api import FakeSlack  # noqa: E402
from tests.fakes.slack_requests import SlackRequester  # noqa: E402

SECRET = "bench-signing-secret"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(url: str, timeout: float = 30.0) -> float:
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        while time.perf_counter() - started < timeout:
            try:
                async with http.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return time.perf_counter() - started
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.02)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(url: str, n: int, concurrency: int, response_url: str | None) -> list[float]:
    requester = SlackRequester(url, SECRET)
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = requester.command_body("/help", user=f"U{i % 50:04d}",
                                              response_url=response_url)
                headers = {"Content-Type": "application/x-www-form-urlencoded",
                           **requester.sign(body)}
                started = time.perf_counter()
                async with http.post(requester.url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}")
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=100)
    args = p.parse_args()
    async with FakeSlack() as slack:
        tmp = tempfile.mkdtemp(prefix="chatops-bench-")
        bot_port, bolt_port = free_port(), free_port()
        env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": SECRET,
               "SLACK_API_URL": slack.base_url, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/b.db",
               "CHATOPS_CONFIG": str(ROOT / "chatops.example.yaml"),
               "CHATOPS_LOG_LEVEL": "ERROR"}
        started = time.perf_counter()
        bot = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1",
                                "--port", str(bot_port)], env=env, cwd=ROOT)
        bolt = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bare_bolt.py"),
                                 "--port", str(bolt_port), "--slack-api", slack.base_url,
                                 "--secret", SECRET], cwd=ROOT)
        try:
            bot_url, bolt_url = f"http://127.0.0.1:{bot_port}", f"http://127.0.0.1:{bolt_port}"
            await wait_ready(bot_url)
            startup = time.perf_counter() - started
            await wait_ready(bolt_url)
            await asyncio.sleep(2.0)
            idle_rss = rss_mib(bot.pid)
            reply_url = slack.response_url("bench")
            # Warm both up, then alternate rounds so drift hits both equally.
            await load(bot_url, 200, args.concurrency, reply_url)
            await load(bolt_url, 200, args.concurrency, None)
            bot_lat: list[float] = []
            bolt_lat: list[float] = []
            rounds = 3
            for _ in range(rounds):
                bot_lat += await load(bot_url, args.requests // rounds, args.concurrency,
                                      reply_url)
                bolt_lat += await load(bolt_url, args.requests // rounds, args.concurrency, None)
            busy_rss = rss_mib(bot.pid)
        finally:
            for proc in (bot, bolt):
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    print(f"pid {proc.pid} ignored SIGTERM for 15 s; killing it")
                    proc.kill()
    print(f"requests per side: {len(bot_lat)}  concurrency: {args.concurrency}")
    print(f"{'':14}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'bot':14}{pct(bot_lat, 50):10.1f}{pct(bot_lat, 99):10.1f}")
    print(f"{'bare bolt':14}{pct(bolt_lat, 50):10.1f}{pct(bolt_lat, 99):10.1f}")
    print(f"{'ratio':14}{pct(bot_lat, 50) / pct(bolt_lat, 50):10.2f}"
          f"{pct(bot_lat, 99) / pct(bolt_lat, 99):10.2f}")
    print(f"bot start-up to ready: {startup:.2f} s")
    print(f"bot RSS idle: {idle_rss:.1f} MiB, after load: {busy_rss:.1f} MiB")


if __name__ == "__main__":
    asyncio.run(main())
