"""With the real Prometheus and Alertmanager (Debian's packages): a rule fires,
Alertmanager notifies the bot, an incident thread opens; the rule stops
firing and the incident is mitigated; a bot restart in between and a database
outage change nothing."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import select

from bot.app import BotApp
from bot.core.config import Config
from bot.core.db import Database
from bot.incidents.models import AlertNotification, Incident
from bot.runtime import Runtime, build_runtime
from tests.conftest import PG_URL, DbTarget, _pg_admin, bot_settings, eventually, require_postgres
from tests.fakes.alerting import Alertmanager, MetricExporter, Prometheus, require_binaries
from tests.fakes.slack_api import FakeSlack
from tests.fakes.tcp_proxy import TcpProxy
from tests.incidents.conftest import TOKEN

RULES = """
groups:
  - name: chatops-test
    rules:
      - alert: CheckoutDown
        expr: chatops_test_up{service="checkout"} == 0
        for: 0s
        labels: {severity: critical}
        annotations:
          summary: Checkout is down
          runbook_url: https://runbooks.example.com/checkout-down
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_bot(slack: FakeSlack, target: DbTarget, config: Config, db: Database,
                    port: int) -> Runtime:
    bot = BotApp(bot_settings(slack, target), config, db=db, outbox_rate=20,
                 scheduler_poll=0.05, scm=None, metrics_source=None)
    runtime = build_runtime(bot)
    await runtime.start("127.0.0.1", port)
    return runtime


async def incidents_in(db: Database) -> list[Incident]:
    async with db.transaction() as s:
        return list((await s.exec(select(Incident))).all())


async def test_rule_fires_resolves_and_survives_a_restart(
    db_target: DbTarget, slack: FakeSlack, config: Config, tmp_path: Path,
) -> None:
    require_binaries()
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/webhooks/alertmanager"
    db = db_target.database()
    await db.upgrade()
    runtime = await start_bot(slack, db_target, config, db_target.database(), port)
    async with MetricExporter() as exporter, \
            Alertmanager(webhook, token=TOKEN, workdir=tmp_path / "am") as am, \
            Prometheus(exporter.target, RULES, am.url, workdir=tmp_path / "prom"):
        try:
            exporter.set("chatops_test_up", 0, labels={"service": "checkout"})

            async def opened() -> bool:
                return len(await incidents_in(db)) == 1

            await eventually(opened, timeout=30, interval=0.2)
            [inc] = await incidents_in(db)
            assert (inc.title, inc.severity, inc.service) == ("Checkout is down", "SEV2",
                                                               "checkout")
            # Restart the bot while the alert keeps firing.
            await runtime.stop()
            runtime = await start_bot(slack, db_target, config, db_target.database(), port)
            exporter.set("chatops_test_up", 1, labels={"service": "checkout"})

            async def mitigated() -> bool:
                found = await incidents_in(db)
                return len(found) == 1 and found[0].status == "Mitigated"

            await eventually(mitigated, timeout=40, interval=0.2)
            await eventually(lambda: _delivered(runtime), timeout=10)
        finally:
            await runtime.stop()
    homes = [m for m in slack.messages("C0INCIDENTS") if not m.thread_ts]
    assert len(homes) == 1 and "Mitigated" in homes[0].text
    assert any("every alert has resolved" in m.text for m in slack.messages("C0INCIDENTS"))
    await db.dispose()


async def _delivered(runtime: Runtime) -> bool:
    from datetime import timedelta

    messages, _ = await runtime.bot.pending_work(timedelta(0))
    return messages == 0


@pytest.fixture
async def proxied_pg() -> AsyncIterator[tuple[TcpProxy, DbTarget]]:
    """PostgreSQL reached through a proxy the test can cut."""
    require_postgres()
    host_port = PG_URL.split("@")[-1].split("/")[0]
    host, _, pg_port = host_port.partition(":")
    schema = f"t_proxy_{free_port()}"
    await _pg_admin(f'CREATE SCHEMA "{schema}"')
    try:
        async with TcpProxy(host, int(pg_port or 5432)) as proxy:
            url = PG_URL.replace(host_port, f"127.0.0.1:{proxy.port}")
            yield proxy, DbTarget("postgresql", url, schema)
    finally:
        await _pg_admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_database_outage_gets_503_and_alertmanagers_retry_lands_once(
    proxied_pg: tuple[TcpProxy, DbTarget], slack: FakeSlack, config: Config, tmp_path: Path,
) -> None:
    require_binaries(prometheus=False)
    proxy, target = proxied_pg
    db = target.database()
    await db.upgrade()
    port = free_port()
    runtime = await start_bot(slack, target, config, db, port)
    webhook = f"http://127.0.0.1:{port}/webhooks/alertmanager"
    try:
        async with Alertmanager(webhook, token=TOKEN, workdir=tmp_path / "am") as am:
            await proxy.pause()
            labels = {"alertname": "CartErrors", "service": "cart", "severity": "critical"}
            await am.post_alerts([{"labels": labels,
                                   "annotations": {"summary": "Cart errors"}}])
            refused = runtime.bot.metrics.webhooks.labels("alertmanager", "503")
            await eventually(lambda: refused._value.get() >= 1, timeout=20)
            await proxy.resume()
            check = target.database()

            async def created() -> bool:
                async with check.transaction() as s:
                    return len((await s.exec(select(Incident))).all()) == 1

            await eventually(created, timeout=60, interval=0.2)
            async with check.transaction() as s:
                notes = (await s.exec(select(AlertNotification))).all()
                assert len((await s.exec(select(Incident))).all()) == 1
            await check.dispose()
            assert len(notes) == 1
    finally:
        await runtime.stop()
