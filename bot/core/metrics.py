"""The bot's own Prometheus metrics, in a registry per process object (so
tests can run several bots in one interpreter)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


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

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
