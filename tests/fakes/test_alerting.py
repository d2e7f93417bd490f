"""The alerting harness itself: real Alertmanager and Prometheus deliver to a webhook
sink the way they will deliver to the bot, and the TCP proxy can cut PostgreSQL off.

The timings printed here (run with -s) are what tests of the bot can rely on.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from sqlalchemy.engine import make_url

from tests.conftest import PG_URL, require_postgres
from tests.fakes.alerting import (
    Alertmanager,
    MetricExporter,
    Prometheus,
    now_rfc3339,
    require_binaries,
)
from tests.fakes.tcp_proxy import TcpProxy

TOKEN = "am-test-token"


@dataclass
class Delivery:
    time: float  # time.monotonic() on arrival
    authorization: str | None
    body: dict[str, Any]
    status: int  # what the sink answered


class WebhookSink:
    """Records Alertmanager's POSTs; `answers` is a queue of statuses to give first."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.answers: list[int] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _hook(self, request: web.Request) -> web.Response:
        status = self.answers.pop(0) if self.answers else 200
        self.deliveries.append(Delivery(time.monotonic(), request.headers.get("Authorization"),
                                        await request.json(), status))
        return web.Response(status=status, text="ok" if status == 200 else "unavailable")

    async def __aenter__(self) -> WebhookSink:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait(
        self, predicate: Callable[[Delivery], bool], timeout: float, *, after: int = 0,
        logs: Callable[[], str] = lambda: "",
    ) -> Delivery:
        """The first delivery (from index `after` on) matching predicate."""
        deadline = time.monotonic() + timeout
        while True:
            for delivery in self.deliveries[after:]:
                if predicate(delivery):
                    return delivery
            if time.monotonic() > deadline:
                seen = [(d.body.get("status"), d.status) for d in self.deliveries]
                raise AssertionError(f"no matching delivery within {timeout}s; got {seen}\n"
                                     f"{logs()[-4000:]}")
            await asyncio.sleep(0.01)


def status_is(status: str) -> Callable[[Delivery], bool]:
    return lambda d: d.body.get("status") == status


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    async with WebhookSink() as s:
        yield s


def checkout_alerts(n: int) -> list[dict[str, Any]]:
    return [
        {"labels": {"alertname": "HighLatency", "service": "checkout", "instance": f"pod-{i}",
                    "severity": "warning"},
         "annotations": {"summary": f"p99 high on pod-{i}"}}
        for i in range(n)
    ]


async def test_alertmanager_groups_notifies_and_resolves(sink: WebhookSink) -> None:
    require_binaries(prometheus=False)
    # With group_wait 0s the group is flushed as soon as its first alert is in, which can
    # be before the rest of the same POST is: 1 alert now, the others a group_interval
    # later. A short group_wait makes "3 alerts in one POST → one notification" reliable.
    async with Alertmanager(sink.url, token=TOKEN, group_wait="250ms") as am:
        posted = time.monotonic()
        await am.post_alerts(checkout_alerts(3))
        firing = await sink.wait(status_is("firing"), 5, logs=am.logs)
        body = firing.body
        assert firing.authorization == f"Bearer {TOKEN}"
        assert body["version"] == "4"
        assert body["receiver"] == "chatops"
        assert body["groupKey"] == '{}:{alertname="HighLatency", service="checkout"}'
        assert body["groupLabels"] == {"alertname": "HighLatency", "service": "checkout"}
        assert body["commonLabels"]["severity"] == "warning"
        assert body["externalURL"] == am.url
        assert body["truncatedAlerts"] == 0
        assert len(body["alerts"]) == 3
        assert {a["labels"]["instance"] for a in body["alerts"]} == {"pod-0", "pod-1", "pod-2"}
        assert all(a["status"] == "firing" and a["fingerprint"] for a in body["alerts"])
        print(f"\nAM firing notification {firing.time - posted:.3f}s after POST /api/v2/alerts")
        assert len(await am.alerts(active="true")) == 3

        resolved_at = time.monotonic()
        await am.resolve(*[a["labels"] for a in checkout_alerts(3)])
        resolved = await sink.wait(status_is("resolved"), 5, logs=am.logs)
        assert resolved.body["groupKey"] == body["groupKey"]
        assert [a["status"] for a in resolved.body["alerts"]] == ["resolved"] * 3
        # Go trims trailing zeros of the fraction ("…59.38Z"): compare parsed, not as text.
        assert all(datetime.fromisoformat(a["endsAt"]) > datetime.fromisoformat(a["startsAt"])
                   for a in resolved.body["alerts"])
        print(f"AM resolved notification {resolved.time - resolved_at:.3f}s after resolve()")
        await asyncio.sleep(1.5)  # a few group_interval ticks: nothing more is sent
        assert len(sink.deliveries) == 2


async def test_alertmanager_retries_after_503(sink: WebhookSink) -> None:
    require_binaries(prometheus=False)
    sink.answers = [503]
    async with Alertmanager(sink.url, token=TOKEN) as am:
        await am.post_alerts(checkout_alerts(1))
        first = await sink.wait(lambda d: d.status == 503, 5, logs=am.logs)
        retry = await sink.wait(lambda d: d.status == 200, 15, logs=am.logs)
        assert retry.body["groupKey"] == first.body["groupKey"]
        assert retry.body["alerts"] == first.body["alerts"]
        print(f"\nAM retried after 503 in {retry.time - first.time:.3f}s")
        await asyncio.sleep(1.5)
        assert [d.status for d in sink.deliveries] == [503, 200]


async def test_alertmanager_basic_auth(sink: WebhookSink) -> None:
    require_binaries(prometheus=False)
    async with Alertmanager(sink.url, token=None, basic_auth=("am", "s3cret")) as am:
        await am.post_alerts([{"labels": {"alertname": "Basic", "service": "x"},
                               "startsAt": now_rfc3339(-60)}])
        delivery = await sink.wait(status_is("firing"), 5, logs=am.logs)
        assert delivery.authorization == "Basic " + base64.b64encode(b"am:s3cret").decode()


RULES = """
groups:
  - name: chatops-test
    rules:
      - alert: CheckoutDown
        expr: chatops_test_up{service="checkout"} == 0
        for: 0s
        labels:
          severity: critical
        annotations:
          summary: checkout is down
"""


async def test_prometheus_rule_fires_and_resolves(sink: WebhookSink) -> None:
    require_binaries()
    async with MetricExporter() as exporter, Alertmanager(sink.url, token=TOKEN) as am:
        exporter.set("chatops_test_up", 1, labels={"service": "checkout"})
        async with Prometheus(exporter.target, RULES, am.url) as prom:

            def logs() -> str:
                return prom.logs()[-3000:] + am.logs()

            started = time.monotonic()
            deadline = started + 10
            while not await prom.query('chatops_test_up{service="checkout"} == 1'):
                assert time.monotonic() < deadline, logs()
                await asyncio.sleep(0.1)
            print(f"\nfirst scrape seen {time.monotonic() - started:.3f}s after Prometheus ready")

            down = time.monotonic()
            exporter.set("chatops_test_up", 0, labels={"service": "checkout"})
            firing = await sink.wait(status_is("firing"), 15, logs=logs)
            [alert] = firing.body["alerts"]
            assert alert["labels"]["alertname"] == "CheckoutDown"
            assert alert["labels"]["severity"] == "critical"
            assert alert["labels"]["service"] == "checkout"
            assert alert["labels"]["instance"] == exporter.target
            assert alert["generatorURL"].startswith(prom.url)
            assert firing.authorization == f"Bearer {TOKEN}"
            print(f"Prometheus→AM firing notification {firing.time - down:.3f}s after set(0)")

            await asyncio.sleep(2)  # Prometheus re-sends every second: no new notification
            assert len(sink.deliveries) == 1

            up = time.monotonic()
            exporter.set("chatops_test_up", 1, labels={"service": "checkout"})
            resolved = await sink.wait(status_is("resolved"), 15, logs=logs)
            assert resolved.body["groupKey"] == firing.body["groupKey"]
            assert resolved.body["alerts"][0]["fingerprint"] == alert["fingerprint"]
            print(f"Prometheus→AM resolved notification {resolved.time - up:.3f}s after set(1)")


async def test_tcp_proxy_cuts_postgres_off() -> None:
    require_postgres()
    url = make_url(PG_URL)
    target = (url.host or "127.0.0.1", url.port or 5432)
    async with TcpProxy(*target) as proxy:

        async def connect(timeout: float = 2.0) -> Any:
            return await asyncpg.connect(host="127.0.0.1", port=proxy.port, user=url.username,
                                         password=url.password, database=url.database,
                                         timeout=timeout)

        conn = await connect()
        assert await conn.fetchval("select 41 + 1") == 42
        assert proxy.active == 1

        await proxy.pause()
        with pytest.raises((OSError, asyncpg.PostgresError, asyncpg.InterfaceError)):
            await conn.fetchval("select 1")  # the open connection was dropped
        with pytest.raises((OSError, asyncpg.InterfaceError, asyncpg.PostgresError)):
            await connect()
        assert proxy.forwarded == 1

        await proxy.resume()
        conn = await connect()
        assert await conn.fetchval("select 1") == 1

        await proxy.pause("refuse")
        with pytest.raises(ConnectionRefusedError):
            await connect()
        await proxy.pause("hang")  # listening again, but nothing answers
        with pytest.raises(TimeoutError):
            await connect(timeout=0.5)
        await proxy.resume()
        conn = await connect()
        assert await conn.fetchval("select 2") == 2
        await conn.close()
