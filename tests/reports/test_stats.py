"""/stats and the response gauges, checked against a seeded history whose
every figure is worked out by hand below."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.core.clock import ManualClock
from bot.core.config import Config
from bot.core.db import Database
from bot.core.metrics import BotMetrics
from bot.deploys.models import Deployment, DeployState
from bot.incidents.models import Incident, IncidentStatus
from bot.paging.models import Page
from bot.reports.dora import DeployRow, dora_figures
from bot.reports.exporter import StatsExporter
from bot.reports.report import stats_report
from bot.reports.stats import Window, default_environment, quantile
from tests.conftest import RunningBot

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)  # the window is 03-01 12:00 → 03-31 12:00


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


H, M = timedelta(hours=1), timedelta(minutes=1)


@dataclass
class Seeded:
    """Ids of the seeded rows, by the names used in the comments."""

    ids: dict[str, int] = field(default_factory=dict)


async def seed(db: Database, shift: timedelta = timedelta(0)) -> Seeded:
    """The history, moved by `shift` (the end-to-end tests run at the real
    time; durations, which is what is checked, do not move).

    Incidents (detected, ack, mitigated, resolved):
      I1 checkout SEV1 03-10 09:40, +5m, +20m, +1h       ← 40 min after D2
      I2 checkout SEV2 03-15 09:00, +15m, +45m, +3h      ← 30 min after D3
      I3 cart     SEV3 03-20 12:00, -, -, +4h            ← 30 min after C1
      I4 checkout SEV2 03-28 00:00, +10m, open
      I5 checkout SEV1 02-10 (before the window), resolved
      I6 search   SEV3 02-20 (before the window), still open
    Deploys of checkout to production (commit, start, finish, end state):
      D0 02-25 completed (before the window)
      D1 commit 03-05 08:00, 09:05 → 10:00 Completed      lead 2h
      D2 commit 03-09 12:00, 03-10 08:01 → 09:00 Completed lead 21h; I1 → failed
      D3 commit 03-14 20:00, 03-15 08:00 → 08:30 Completed lead 12h30m; I2 and R1 → failed
      R1 rollback requested 03-15 09:10, done 09:20
      D4 03-20 10:01 → 10:15 RolledBack by itself        failed, restored in 14m
      D5 requested 03-22, Rejected, never started         not a change
      D6 commit 03-25 06:00, 10:00 → 11:00 Completed      lead 5h; R2 is D7's, not D6's
      D7 03-30 10:00 → 10:30 Failed                       failed
      R2 rollback requested 03-30 11:00, done 11:10       restores D7 (70m)
      D8 commit 03-31 07:00, 03-31 08:30 → 09:00 Completed lead 2h; R3 → failed
      R3 rollback requested 03-31 10:00, still running    D8 not restored
    Others: S1 checkout to staging 03-10 09:10 (lead 10m; I1 follows it but
    staging is not production-like); C1 cart to production commit 03-20
    10:30, 11:00 → 11:30 Completed (lead 1h; I3 → failed, restored when I3
    resolved: 4h).
    Pages: UALICE for I1, I2, I4; UBOB for I2 and one manual page; UCAROL one
    held back by the rate limit (not counted) and its bundle page; the
    incidents channel for I3; UDAN before the window.
    """
    s = Seeded()

    def t(value: datetime) -> datetime:
        return value + shift

    incidents = {
        "I1": ("checkout", "SEV1", at(10, 9, 40), 5 * M, 20 * M, H),
        "I2": ("checkout", "SEV2", at(15, 9), 15 * M, 45 * M, 3 * H),
        "I3": ("cart", "SEV3", at(20, 12), None, None, 4 * H),
        "I4": ("checkout", "SEV2", at(28, 0), 10 * M, None, None),
        "I5": ("checkout", "SEV1", at(10, 9, month=2), 5 * M, None, H),
        "I6": ("search", "SEV3", at(20, 9, month=2), None, None, None),
    }
    deploys = {
        # name: (kind, service, env, state, commit, started, finished, created)
        "D0": ("deploy", "checkout", "production", DeployState.COMPLETED,
               at(24, 8, month=2), at(25, 9, month=2), at(25, 10, month=2)),
        "D1": ("deploy", "checkout", "production", DeployState.COMPLETED,
               at(5, 8), at(5, 9, 5), at(5, 10)),
        "D2": ("deploy", "checkout", "production", DeployState.COMPLETED,
               at(9, 12), at(10, 8, 1), at(10, 9)),
        "S1": ("deploy", "checkout", "staging", DeployState.COMPLETED,
               at(10, 9), at(10, 9, 5), at(10, 9, 10)),
        "D3": ("deploy", "checkout", "production", DeployState.COMPLETED,
               at(14, 20), at(15, 8), at(15, 8, 30)),
        "R1": ("rollback", "checkout", "production", DeployState.ROLLED_BACK,
               None, at(15, 9, 10), at(15, 9, 20)),
        "D4": ("deploy", "checkout", "production", DeployState.ROLLED_BACK,
               at(20, 9), at(20, 10, 1), at(20, 10, 15)),
        "C1": ("deploy", "cart", "production", DeployState.COMPLETED,
               at(20, 10, 30), at(20, 11), at(20, 11, 30)),
        "D5": ("deploy", "checkout", "production", DeployState.REJECTED,
               at(22, 9), None, at(22, 10, 30)),
        "D6": ("deploy", "checkout", "production", DeployState.COMPLETED,
               at(25, 6), at(25, 10), at(25, 11)),
        "D7": ("deploy", "checkout", "production", DeployState.FAILED,
               at(29, 10), at(30, 10), at(30, 10, 30)),
        "R2": ("rollback", "checkout", "production", DeployState.ROLLED_BACK,
               None, at(30, 11), at(30, 11, 10)),
        "D8": ("deploy", "checkout", "production", DeployState.COMPLETED,
               at(31, 7), at(31, 8, 30), at(31, 9)),
        "R3": ("rollback", "checkout", "production", DeployState.ROLLING_BACK,
               None, at(31, 10), None),
    }  # fmt: skip
    async with db.transaction() as session:
        for name, (service, sev, detected, ack, mitigated, resolved) in incidents.items():
            incident = Incident(
                title=f"{name} on {service}",
                service=service,
                severity=sev,
                status=IncidentStatus.RESOLVED if resolved else IncidentStatus.ACKNOWLEDGED,
                channel="C0INCIDENTS",
                detected_at=t(detected),
                acknowledged_at=t(detected + ack) if ack else None,
                mitigated_at=t(detected + mitigated) if mitigated else None,
                resolved_at=t(detected + resolved) if resolved else None,
            )
            session.add(incident)
            await session.flush()
            s.ids[name] = incident.id or 0
        for name, (kind, service, env, state, commit, started, finished) in deploys.items():
            # Rollbacks start as they are requested; deploys wait for checks a little.
            requested = started or commit
            assert requested is not None
            created = requested - 5 * M if started and kind == "deploy" else requested
            row = Deployment(
                kind=kind,
                service=service,
                environment=env,
                version=name.lower(),
                image=f"registry.example.com/shop/{service}:{name.lower()}",
                strategy="rolling",
                state=state,
                active=finished is None,
                requested_by="UALICE",
                commit_time=t(commit) if commit else None,
                created_at=t(created),
                started_at=t(started) if started else None,
                finished_at=t(finished) if finished else None,
            )
            session.add(row)
            await session.flush()
            s.ids[name] = row.id or 0
        pages = [
            ("UALICE", "I1", at(10, 9, 41), False),
            ("UALICE", "I2", at(15, 9, 1), False),
            ("UBOB", "I2", at(15, 9, 6), False),
            ("C0INCIDENTS", "I3", at(20, 12, 1), False),
            ("UALICE", "I4", at(28, 0, 1), False),
            ("UCAROL", "I4", at(28, 0, 2), True),  # held back: reached UCAROL in the bundle
            ("UCAROL", None, at(28, 0, 15), False),  # the bundle
            ("UBOB", None, at(29, 14), False),  # a page by hand
            ("UDAN", "I5", at(10, 9, 1, month=2), False),  # before the window
        ]
        for user, inc, sent, suppressed in pages:
            session.add(
                Page(
                    user=user,
                    incident_id=s.ids[inc] if inc else None,
                    kind="bundle" if inc is None and user == "UCAROL" else "escalation",
                    suppressed=suppressed,
                    sent_at=t(sent),
                )
            )
    return s


# -- the figures, against the seeded history ---------------------------------------------


async def test_figures_for_all_services(db: Database, config: Config) -> None:
    s = await seed(db)
    r = await stats_report(db, config, NOW, days=30, service=None, environment="production")
    assert r.window == Window(at(1, 12), NOW)
    inc = r.incidents
    assert inc.by_severity == {"SEV1": 1, "SEV2": 2, "SEV3": 1, "SEV4": 0}
    assert (inc.total, inc.open_now) == (4, 2)  # I4 and I6 are open
    assert (inc.mtta_seconds, inc.acknowledged) == (600.0, 3)  # (5m + 15m + 10m) / 3
    assert (inc.mttr_seconds, inc.resolved) == (9600.0, 3)  # (1h + 3h + 4h) / 3
    assert r.pages == [("UALICE", 3), ("UBOB", 2), ("C0INCIDENTS", 1), ("UCAROL", 1)]

    d = r.dora
    assert d.deployments == 6  # D1 D2 D3 D6 D8 C1
    assert d.per_day == pytest.approx(6 / 30) and d.per_week == pytest.approx(1.4)
    assert sorted(d.lead_times) == [3600, 7200, 7200, 18000, 45000, 75600]
    assert d.lead_time_median == 12600  # (2h + 5h) / 2
    assert d.lead_time_p90 == pytest.approx(60300)  # 12h30m + 0.5 * (21h - 12h30m)
    assert d.changes == 8  # D1 D2 D3 D4 D6 D7 D8 C1: not D5 (never started), S1 (staging)
    failed = {f.deploy_id: f for f in d.failures}
    i = s.ids
    assert set(failed) == {i["D2"], i["D3"], i["D4"], i["D7"], i["D8"], i["C1"]}
    assert d.change_failure_ratio == 6 / 8
    assert failed[i["C1"]].reasons == (f"INC-{i['I3']}",)
    assert failed[i["C1"]].restore_seconds == 4 * 3600  # I3 resolved (never mitigated)
    assert sorted(d.restore_times) == [840, 1200, 3000, 4200, 14400]
    assert d.restore_median == 3000
    assert d.unrestored == 1  # D8


async def test_figures_for_one_service(db: Database, config: Config) -> None:
    s = await seed(db)
    r = await stats_report(db, config, NOW, days=30, service="checkout", environment="production")
    inc = r.incidents
    assert inc.by_severity == {"SEV1": 1, "SEV2": 2, "SEV3": 0, "SEV4": 0}
    assert (inc.total, inc.open_now) == (3, 1)
    assert (inc.mtta_seconds, inc.acknowledged) == (600.0, 3)
    assert (inc.mttr_seconds, inc.resolved) == (7200.0, 2)  # (1h + 3h) / 2; I4 is open
    # Pages about checkout's incidents only: not the manual page, the bundle or I3's.
    assert r.pages == [("UALICE", 3), ("UBOB", 1)]

    d = r.dora
    i = s.ids
    assert d.deployments == 5
    assert sorted(d.lead_times) == [7200, 7200, 18000, 45000, 75600]
    assert d.lead_time_median == 18000
    assert d.lead_time_p90 == pytest.approx(63360)  # 12h30m + 0.6 * (21h - 12h30m)
    assert d.changes == 7
    failed = {f.deploy_id: f for f in d.failures}
    # D1 was followed by R1 only after D2 had replaced it; R2 undid D7, not D6.
    assert set(failed) == {i["D2"], i["D3"], i["D4"], i["D7"], i["D8"]}
    assert d.change_failure_ratio == 5 / 7
    assert failed[i["D2"]].reasons == (f"INC-{i['I1']}",)
    assert failed[i["D2"]].failed_at == at(10, 9, 40)  # I1 detected
    assert failed[i["D2"]].restored_at == at(10, 10)  # I1 mitigated
    assert failed[i["D3"]].reasons == ("rolled back afterwards", f"INC-{i['I2']}")
    assert failed[i["D3"]].failed_at == at(15, 8, 30)  # its finish, before I2
    assert failed[i["D3"]].restored_at == at(15, 9, 20)  # R1 done, before I2 was mitigated
    assert failed[i["D4"]].reasons == ("ended RolledBack",)
    assert failed[i["D4"]].restore_seconds == 14 * 60  # from its start to its own rollback
    assert failed[i["D7"]].reasons == ("ended Failed",)
    assert failed[i["D7"]].restore_seconds == 70 * 60  # from its start to R2 done
    assert failed[i["D8"]].reasons == ("rolled back afterwards",)
    assert failed[i["D8"]].restored_at is None  # R3 still running
    assert sorted(d.restore_times) == [840, 1200, 3000, 4200]
    assert d.restore_median == 2100
    assert d.unrestored == 1


async def test_staging_and_shorter_windows(db: Database, config: Config) -> None:
    await seed(db)
    staging = await stats_report(
        db, config, NOW, days=30, service="checkout", environment="staging"
    )
    # I1 came 30 minutes after S1, but incidents count against production only.
    assert (staging.dora.deployments, staging.dora.lead_times) == (1, (600.0,))
    assert (staging.dora.changes, staging.dora.failures) == (1, ())
    assert staging.dora.change_failure_ratio == 0.0

    week = await stats_report(db, config, NOW, days=7, service="checkout", environment="production")
    assert week.window.start == at(24, 12)
    assert week.incidents.by_severity["SEV2"] == 1 and week.incidents.total == 1  # I4
    assert week.incidents.mttr_seconds is None and week.incidents.resolved == 0
    assert week.dora.deployments == 2  # D6 D8
    assert week.dora.changes == 3 and len(week.dora.failures) == 2  # D7 D8
    assert week.pages == [("UALICE", 1)]


async def test_gauges_from_the_seeded_history(db: Database, config: Config) -> None:
    await seed(db)
    metrics = BotMetrics()
    exporter = StatsExporter(db, config, ManualClock(NOW), metrics, max_age=3600)
    await exporter.refresh()
    g = Samples(metrics)
    assert g("chatops_stats_window_days") == 30
    assert g("chatops_incidents_open", severity="SEV2") == 1  # I4
    assert g("chatops_incidents_open", severity="SEV3") == 1  # I6
    assert g("chatops_incidents_open", severity="SEV1") == 0
    assert g("chatops_incidents_detected", service="checkout", severity="SEV2") == 2
    assert g("chatops_incidents_detected", service="search", severity="SEV3") == 0
    assert g("chatops_mtta_seconds", service="checkout") == 600
    assert g("chatops_mttr_seconds", service="checkout") == 7200
    assert g("chatops_mttr_seconds", service="cart") == 4 * 3600
    assert g("chatops_mtta_seconds", service="cart") is None  # I3 was never acknowledged
    assert g("chatops_pages_sent", user="UALICE") == 3
    prod = {"service": "checkout", "environment": "production"}
    assert g("chatops_deployments_completed", **prod) == 5
    assert g("chatops_deployment_frequency_per_day", **prod) == pytest.approx(5 / 30)
    assert g("chatops_deploy_lead_time_seconds", **prod, quantile="0.5") == 18000
    assert g("chatops_deploy_lead_time_seconds", **prod, quantile="0.9") == pytest.approx(63360)
    assert g("chatops_change_failure_ratio", **prod) == pytest.approx(5 / 7)
    assert g("chatops_time_to_restore_seconds", **prod) == 2100
    assert g("chatops_change_failure_ratio", service="cart", environment="production") == 1.0
    # Counts exist for every configured target, measured figures only where measured.
    idle = {"service": "search", "environment": "staging"}
    assert g("chatops_deployments_completed", **idle) == 0
    assert g("chatops_change_failure_ratio", **idle) is None

    # Cached: a new completed deploy is not seen until max_age has passed.
    async with db.transaction() as session:
        session.add(
            Deployment(
                service="search",
                environment="staging",
                version="v9",
                image="x:v9",
                strategy="rolling",
                state=DeployState.COMPLETED,
                active=False,
                requested_by="UALICE",
                created_at=at(31, 11),
                started_at=at(31, 11),
                finished_at=at(31, 11, 5),
            )
        )
    await exporter.refresh()
    assert Samples(metrics)("chatops_deployments_completed", **idle) == 0
    exporter.max_age, exporter._fresh_until = 0, None
    await exporter.refresh()
    assert Samples(metrics)("chatops_deployments_completed", **idle) == 1


class Samples:
    """An exposition's samples, looked up by name and labels (in any order)."""

    def __init__(self, exposition: BotMetrics | str) -> None:
        text = exposition if isinstance(exposition, str) else exposition.exposition().decode()
        self.values = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float | None:
        return self.values.get((name, frozenset(labels.items())))


# -- the arithmetic's corners ---------------------------------------------------------------


def test_quantiles_interpolate_between_ranks() -> None:
    assert quantile([], 0.5) is None
    assert quantile([7.0], 0.9) == 7.0
    assert quantile([10.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert quantile([1.0, 2.0, 3.0, 10.0], 0.9) == pytest.approx(7.9)


def _deploy(
    id_: int, state: str, started: datetime, finished: datetime | None, kind: str = "deploy"
) -> DeployRow:
    return DeployRow(
        id=id_,
        kind=kind,
        service="checkout",
        environment="production",
        state=state,
        created_at=started,
        started_at=started,
        finished_at=finished,
    )


def test_a_rollback_belongs_to_what_was_serving() -> None:
    window = Window(at(1, 0), at(31, 0))
    figures = dora_figures(
        [
            # E1 completes; E2 rolls itself back, so E1 serves again, and R undoes E1.
            _deploy(1, DeployState.COMPLETED, at(2, 9), at(2, 10)),
            _deploy(2, DeployState.ROLLED_BACK, at(3, 9), at(3, 9, 30)),
            _deploy(3, DeployState.ROLLED_BACK, at(3, 12), at(3, 12, 10), kind="rollback"),
            # E4 completes; E5 is superseded by /rollback while rolling out: the
            # rollback is E5's, and E5 is restored when the rollback is done.
            _deploy(4, DeployState.COMPLETED, at(5, 9), at(5, 10)),
            _deploy(5, DeployState.ROLLED_BACK, at(6, 9), at(6, 9, 20)),
            _deploy(6, DeployState.ROLLED_BACK, at(6, 9, 20), at(6, 9, 45), kind="rollback"),
        ],
        [],
        window,
        failure_window=H,
        incident_environments=["production"],
    )
    failed = {f.deploy_id: f for f in figures.failures}
    assert set(failed) == {1, 2, 5}
    assert failed[1].reasons == ("rolled back afterwards",)
    assert failed[1].failed_at == at(2, 10)  # its finish
    assert failed[1].restored_at == at(3, 12, 10)  # the rollback done
    assert figures.changes == 4
    assert failed[2].restore_seconds == 30 * 60  # rolled itself back
    assert failed[5].restored_at == at(6, 9, 45)  # the rollback's finish, not its own


def test_default_environment_is_production_like(config: Config) -> None:
    assert default_environment(config, None) == "production"
    assert default_environment(config, config.service("cart")) == "production"
    only_staging = config.model_copy(
        update={"environments": [e.model_copy(update={"protected": False})
                                 for e in config.environments]}
    )  # fmt: skip
    assert default_environment(only_staging, None) == "production"  # the last listed


# -- /stats through the bot, and /metrics over HTTP ---------------------------------------------


async def say(rb: RunningBot, text: str) -> str:
    name = f"r{len(rb.slack.calls())}"
    await rb.requests.command("/stats", text, response_url=rb.slack.response_url(name))
    [call] = await rb.slack.wait_for("response_url", lambda c: c.name == name)
    return str(call.body["text"])


async def test_stats_command_end_to_end(running_bot: RunningBot) -> None:
    rb = running_bot
    now = rb.bot.clock.now().replace(microsecond=0)
    await seed(rb.bot.db, shift=now - NOW)
    answer = await say(rb, "checkout")
    assert "*Stats for checkout, last 30 days*" in answer
    assert "*Incidents*: 3 (SEV1 1 · SEV2 2 · SEV3 0 · SEV4 0); 1 open now" in answer
    assert "MTTA 10m (3 acknowledged) · MTTR 2h (2 resolved)" in answer
    assert "*Pages*: <@UALICE> 3, <@UBOB> 1" in answer
    assert "*Deploys to production*" in answer
    assert "Deployment frequency: 5 completed (0.17/day, 1.17/week)" in answer
    assert "Lead time for changes: median 5h, p90 17h36m (5 with a commit time)" in answer
    assert "Change failure rate: 71.4% (5 of 7 changes: #" in answer
    assert "Time to restore: median 35m (4 restored, 1 not yet)" in answer
    assert "within 1h" in answer

    everything = await say(rb, "days=30")
    assert "*Stats for all services, last 30 days*" in everything
    assert "*Pages*: <@UALICE> 3, <@UBOB> 2, <#C0INCIDENTS> 1, <@UCAROL> 1" in everything
    assert "Change failure rate: 75% (6 of 8 changes" in everything

    staging = await say(rb, "checkout env=staging")
    assert (
        "*Deploys to staging*" in staging and "Change failure rate: 0% (0 of 1 changes)" in staging
    )

    assert "days must be between 1 and 365" in await say(rb, "checkout days=0")
    assert "`/stats [<service>] [days=<days:int>] [env=<env>]`" in await say(rb, "days=400")
    assert "There is no service 'nope' (known: checkout, cart, search)" in await say(rb, "nope")
    assert "'qa' is not one of the checkout's environments (staging, production)" in await say(
        rb, "checkout env=qa"
    )


async def test_metrics_endpoint_shows_the_gauges(running_bot: RunningBot) -> None:
    rb = running_bot
    now = rb.bot.clock.now().replace(microsecond=0)
    await seed(rb.bot.db, shift=now - NOW)
    async with aiohttp.ClientSession() as http, http.get(rb.url + "/metrics") as resp:
        assert resp.status == 200
        body = await resp.text()
    g = Samples(body)
    prod = {"service": "checkout", "environment": "production"}
    assert g("chatops_change_failure_ratio", **prod) == pytest.approx(5 / 7)
    assert g("chatops_deploy_lead_time_seconds", **prod, quantile="0.5") == 18000
    assert g("chatops_mtta_seconds", service="checkout") == 600
    assert g("chatops_incidents_open", severity="SEV2") == 1
    assert g("chatops_metrics_refresh_failures_total") == 0


async def test_a_failing_or_slow_refresh_serves_stale_gauges() -> None:
    metrics = BotMetrics()
    metrics.mtta.labels("checkout").set(42)

    async def broken() -> None:
        raise RuntimeError("database gone")

    async def slow() -> None:
        await asyncio.sleep(10)

    metrics.add_refresher(broken)
    await metrics.refresh(timeout=1)
    metrics.add_refresher(slow)
    await metrics.refresh(timeout=0.05)
    g = Samples(metrics)
    assert g("chatops_metrics_refresh_failures_total") == 2
    assert g("chatops_mtta_seconds", service="checkout") == 42
