"""/stats' figures as Prometheus gauges, recomputed from the database when
/metrics is scraped (at most every `max_age` seconds)."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from prometheus_client import Gauge

from bot.core.clock import Clock
from bot.core.config import Config
from bot.core.db import Database
from bot.core.metrics import BotMetrics
from bot.reports.dora import dora_by_target
from bot.reports.report import History, load_history
from bot.reports.stats import (
    IncidentRow,
    Window,
    incident_figures,
    pages_per_person,
    production_environments,
)

NO_SERVICE = "none"  # the service label of incidents opened without one

Series = dict[tuple[str, ...], float]


@dataclass
class GaugeValues:
    """Every sample of the response gauges, by label values."""

    window_days: int
    incidents_open: Series = field(default_factory=dict)
    incidents_detected: Series = field(default_factory=dict)
    mtta: Series = field(default_factory=dict)
    mttr: Series = field(default_factory=dict)
    pages_sent: Series = field(default_factory=dict)
    deployments_completed: Series = field(default_factory=dict)
    deployment_frequency: Series = field(default_factory=dict)
    deploy_lead_time: Series = field(default_factory=dict)
    change_failure_ratio: Series = field(default_factory=dict)
    time_to_restore: Series = field(default_factory=dict)


def gauge_values(history: History, window: Window, config: Config) -> GaugeValues:
    """Pure: the samples, per service (and environment for deployments).
    Counts are listed with 0 for every configured service, environment and
    severity, so a dashboard shows "none" rather than "no data"; means,
    quantiles and ratios exist only where something was measured."""
    values = GaugeValues(window_days=config.stats.default_days)
    severities = [s.name for s in config.severities]
    open_now = Counter(i.severity for i in history.incidents if i.is_open)
    for severity in [*severities, *sorted(set(open_now) - set(severities))]:
        values.incidents_open[(severity,)] = open_now[severity]

    by_service: dict[str, list[IncidentRow]] = defaultdict(list)
    for inc in history.incidents:
        by_service[inc.service or NO_SERVICE].append(inc)
    for svc in config.services:
        by_service.setdefault(svc.name, [])
    for service, rows in sorted(by_service.items()):
        figures = incident_figures(rows, window, severities)
        for severity, n in figures.by_severity.items():
            values.incidents_detected[(service, severity)] = n
        if figures.mtta_seconds is not None:
            values.mtta[(service,)] = figures.mtta_seconds
        if figures.mttr_seconds is not None:
            values.mttr[(service,)] = figures.mttr_seconds

    for user, n in pages_per_person(history.pages, window):
        values.pages_sent[(user,)] = n

    targets = dora_by_target(
        history.deploys,
        history.incidents,
        window,
        failure_window=config.stats.change_failure_window,
        incident_environments=production_environments(config),
    )
    for svc in config.services:
        for env in svc.environments:
            values.deployments_completed[(svc.name, env)] = 0
            values.deployment_frequency[(svc.name, env)] = 0.0
    for (service, env), dora in targets.items():
        values.deployments_completed[(service, env)] = dora.deployments
        values.deployment_frequency[(service, env)] = dora.per_day
        for label, q in (("0.5", dora.lead_time_median), ("0.9", dora.lead_time_p90)):
            if q is not None:
                values.deploy_lead_time[(service, env, label)] = q
        if dora.change_failure_ratio is not None:
            values.change_failure_ratio[(service, env)] = dora.change_failure_ratio
        if dora.restore_median is not None:
            values.time_to_restore[(service, env)] = dora.restore_median
    return values


def publish(metrics: BotMetrics, values: GaugeValues) -> None:
    """Replace every sample. No await in here: a scrape never sees a mix of
    old and new series (and series that disappeared are dropped)."""
    metrics.stats_window_days.set(values.window_days)
    pairs: list[tuple[Gauge, Series]] = [
        (metrics.incidents_open, values.incidents_open),
        (metrics.incidents_detected, values.incidents_detected),
        (metrics.mtta, values.mtta),
        (metrics.mttr, values.mttr),
        (metrics.pages_sent, values.pages_sent),
        (metrics.deployments_completed, values.deployments_completed),
        (metrics.deployment_frequency, values.deployment_frequency),
        (metrics.deploy_lead_time, values.deploy_lead_time),
        (metrics.change_failure_ratio, values.change_failure_ratio),
        (metrics.time_to_restore, values.time_to_restore),
    ]
    for gauge, series in pairs:
        gauge.clear()
        for labels, value in series.items():
            gauge.labels(*labels).set(value)


class StatsExporter:
    """Registered with BotMetrics.add_refresher: recomputes the gauges on a
    scrape when the last computation is older than `max_age` seconds. Scrapes
    arriving together wait for one computation instead of each running it."""

    def __init__(
        self,
        db: Database,
        config: Config,
        clock: Clock,
        metrics: BotMetrics,
        *,
        max_age: float = 30.0,
    ) -> None:
        self.db, self.config, self.clock, self.metrics = db, config, clock, metrics
        self.max_age = max_age
        self._lock = asyncio.Lock()
        self._fresh_until: float | None = None

    async def refresh(self) -> None:
        async with self._lock:
            loop = asyncio.get_running_loop()
            if self._fresh_until is not None and loop.time() < self._fresh_until:
                return
            window = Window.last_days(self.clock.now(), self.config.stats.default_days)
            history = await load_history(self.db, window)
            values = await asyncio.to_thread(gauge_values, history, window, self.config)
            publish(self.metrics, values)
            self._fresh_until = loop.time() + self.max_age
