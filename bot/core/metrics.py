"""The bot's own Prometheus metrics, in a registry per process object (so
tests can run several bots in one interpreter)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("chatops.metrics")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

Refresher = Callable[[], Awaitable[None]]


class BotMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.commands = Counter(
            "chatops_commands", "Commands handled", ["command", "outcome"], registry=r)
        self.command_seconds = Histogram(
            "chatops_command_duration_seconds", "Time to handle a command", ["command"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.actions = Counter(
            "chatops_actions", "Button presses handled", ["action", "outcome"], registry=r)
        self.outbox_backlog = Gauge(
            "chatops_outbox_backlog", "Messages waiting to be delivered", registry=r)
        self.outbox_sent = Counter(
            "chatops_outbox_sent", "Messages delivered", ["kind"], registry=r)
        self.outbox_failures = Counter(
            "chatops_outbox_send_failures", "Delivery attempts that failed", ["reason"],
            registry=r)
        self.scheduler_lag = Gauge(
            "chatops_scheduler_lag_seconds", "How late the last claimed job started", registry=r)
        self.scheduler_lag_hist = Histogram(
            "chatops_scheduler_job_lag_seconds", "Delay between a job's due time and its start",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.jobs = Counter(
            "chatops_scheduler_jobs", "Jobs run", ["kind", "outcome"], registry=r)
        self.webhooks = Counter(
            "chatops_webhooks", "Webhook deliveries", ["source", "status"], registry=r)
        self._add_response_gauges(r)
        self.refresh_failures = Counter(
            "chatops_metrics_refresh_failures", "Scrapes served with stale database gauges",
            registry=r)
        self._refreshers: list[Refresher] = []

    def _add_response_gauges(self, r: CollectorRegistry) -> None:
        """Response metrics (/stats' figures), computed from the database on
        scrape. Windowed ones cover the last chatops_stats_window_days; a
        figure with nothing to measure (no deploy, no incident) is absent,
        not 0."""
        self.stats_window_days = Gauge(
            "chatops_stats_window_days", "Days covered by the windowed response metrics",
            registry=r)
        self.incidents_open = Gauge(
            "chatops_incidents_open", "Incidents not resolved yet", ["severity"], registry=r)
        self.incidents_detected = Gauge(
            "chatops_incidents_detected", "Incidents detected in the window",
            ["service", "severity"], registry=r)
        self.mtta = Gauge(
            "chatops_mtta_seconds", "Mean time from detection to acknowledgement, "
            "incidents detected in the window", ["service"], registry=r)
        self.mttr = Gauge(
            "chatops_mttr_seconds", "Mean time from detection to resolution, "
            "incidents detected in the window", ["service"], registry=r)
        self.pages_sent = Gauge(
            "chatops_pages_sent", "Pages delivered in the window, per person", ["user"],
            registry=r)
        self.deployments_completed = Gauge(
            "chatops_deployments_completed", "Deploys completed in the window",
            ["service", "environment"], registry=r)
        self.deployment_frequency = Gauge(
            "chatops_deployment_frequency_per_day", "Completed deploys per day over the window",
            ["service", "environment"], registry=r)
        self.deploy_lead_time = Gauge(
            "chatops_deploy_lead_time_seconds", "Commit time to completed deploy, "
            "deploys completed in the window", ["service", "environment", "quantile"],
            registry=r)
        self.change_failure_ratio = Gauge(
            "chatops_change_failure_ratio", "Failed changes / changes finished in the window "
            "(rolled back, failed, or followed by an incident)", ["service", "environment"],
            registry=r)
        self.time_to_restore = Gauge(
            "chatops_time_to_restore_seconds", "Median time from a failed change to restored "
            "service, failed changes in the window", ["service", "environment"], registry=r)

    def add_refresher(self, refresh: Refresher) -> None:
        """Something that updates gauges from elsewhere (the database) before
        each exposition; it caches as it sees fit."""
        self._refreshers.append(refresh)

    async def refresh(self, timeout: float = 5.0) -> None:
        """Run the refreshers, bounded: a slow or failing database makes the
        scrape serve the previous values (and count it), never hang or fail."""
        try:
            async with asyncio.timeout(timeout):
                results = await asyncio.gather(
                    *(refresh() for refresh in self._refreshers), return_exceptions=True)
        except TimeoutError:
            log.warning("metrics refresh timed out", extra={"timeout": timeout})
            self.refresh_failures.inc()
            return
        for result in results:
            if isinstance(result, Exception):
                log.warning("metrics refresh failed", extra={"error": repr(result)})
                self.refresh_failures.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
