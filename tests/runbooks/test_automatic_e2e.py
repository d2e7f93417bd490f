"""With the real Prometheus and Alertmanager: a scrape target goes down, the
TargetDown rule fires, Alertmanager notifies the bot, and the automatic
dependency-check runbook runs in the incident's thread against that same
Prometheus."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from bot.app import BotApp
from bot.core.config import Config
from bot.incidents.models import Incident
from bot.runtime import build_runtime
from integrations.prometheus import PrometheusClient
from tests.conftest import DbTarget, bot_settings, eventually
from tests.fakes.alerting import Alertmanager, MetricExporter, Prometheus, require_binaries
from tests.fakes.slack_api import FakeSlack
from tests.incidents.conftest import TOKEN
from tests.runbooks.conftest import runs, steps
from tests.test_crash_recovery import free_port

RULES = """
groups:
  - name: chatops-test
    rules:
      - alert: TargetDown
        expr: up == 0
        for: 0s
        labels: {severity: warning, service: checkout}
        annotations:
          summary: A scrape target is down
"""


async def test_automatic_runbook_fires_from_alertmanager(
    db_target: DbTarget, slack: FakeSlack, config: Config, tmp_path: Path
) -> None:
    require_binaries()
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/webhooks/alertmanager"
    async with (
        MetricExporter() as exporter,
        Alertmanager(webhook, token=TOKEN, workdir=tmp_path / "am") as am,
        Prometheus(exporter.target, RULES, am.url, workdir=tmp_path / "prom") as prom,
    ):
        db = db_target.database()
        await db.upgrade()
        bot = BotApp(
            bot_settings(slack, db_target),
            config,
            db=db,
            outbox_rate=20,
            scheduler_poll=0.05,
            scm=None,
            metrics_source=PrometheusClient(prom.url),
        )
        runtime = build_runtime(bot)
        await runtime.start("127.0.0.1", port)
        try:
            exporter.status = 503  # the scrape fails: up == 0

            async def finished() -> bool:
                return any(run.finished for run in await runs(bot.db))

            await eventually(finished, timeout=60, interval=0.2)
            async with bot.db.transaction() as s:
                [inc] = (await s.exec(select(Incident))).all()
            [run] = await runs(bot.db)
            assert (run.runbook, run.automatic, run.incident_id) == (
                "dependency-check",
                True,
                inc.id,
            )
            assert run.status == "Succeeded", run.error
            assert run.params["instance"] == exporter.target  # from the alert's labels
            records = await steps(bot.db, run.id or 0)
            assert [(r.name, r.status) for r in records] == [
                ("scrape", "failed"),  # Prometheus' own `up` for the target is 0
                ("health", "failed"),
                ("summary", "ok"),
            ]
            assert records[0].output["value"] == 0
            summary = await slack.wait_for(
                "chat.postMessage", lambda c: c.ok and "Prometheus scrape DOWN" in c.body["text"]
            )
            assert summary[0].body.get("thread_ts")  # in the incident's thread
        finally:
            await runtime.stop()
