"""The composition root: builds the core mechanisms, registers the command
families, and starts/stops the background workers. Transports (Slack, the
terminal, the web app) are attached on top of a BotApp."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func
from sqlmodel import col, select

from bot.core.chat import CommandContext, Reply
from bot.core.clock import Clock, SystemClock
from bot.core.config import Config
from bot.core.db import Database
from bot.core.delivery import Deliverer
from bot.core.dispatch import Dispatcher
from bot.core.errors import ChatOpsError
from bot.core.events import EventHub
from bot.core.metrics import BotMetrics
from bot.core.models import Job, JobStatus, OutboxMessage, OutboxStatus
from bot.core.outbox import Outbox
from bot.core.outbox_sender import OutboxSender
from bot.core.rbac import Authorizer
from bot.core.registry import CommandRegistry
from bot.core.scheduler import Scheduler
from bot.core.settings import Settings
from bot.deploys.ports import Cluster, ClusterProvider, MetricsSource, SourceControl
from integrations.slack import SlackPoster

if TYPE_CHECKING:
    from integrations.jira_issues import JiraClient

log = logging.getLogger("chatops.app")


def _instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class NoCluster:
    """Stands in when no Kubernetes is configured: every use says so plainly."""

    def for_context(self, context: str | None) -> Cluster:
        raise ChatOpsError(
            "No Kubernetes cluster is configured: set KUBECONFIG (or run inside a cluster)."
        )


def _clusters_from(settings: Settings) -> ClusterProvider:
    if settings.kubeconfig or os.environ.get("KUBERNETES_SERVICE_HOST"):
        from integrations.kubernetes import KubeClusters

        return KubeClusters(settings.kubeconfig)
    return NoCluster()


def _scm_from(settings: Settings) -> SourceControl | None:
    if settings.github_token is None:
        return None
    from integrations.github import GitHubClient

    return GitHubClient(settings.github_token.get_secret_value(), settings.github_api_url)


def _metrics_from(settings: Settings) -> MetricsSource | None:
    if not settings.prometheus_url:
        return None
    from integrations.prometheus import PrometheusClient

    return PrometheusClient(settings.prometheus_url)


def _jira_from(settings: Settings) -> JiraClient | None:
    if not settings.jira_url or settings.jira_token is None:
        return None
    from integrations.jira_issues import JiraClient

    return JiraClient(settings.jira_url, settings.jira_user, settings.jira_token.get_secret_value())


class BotApp:
    def __init__(
        self,
        settings: Settings,
        config: Config,
        *,
        db: Database | None = None,
        clock: Clock | None = None,
        outbox_rate: float = 1.0,
        outbox_burst: int = 3,
        scheduler_poll: float = 0.25,
        clusters: ClusterProvider | None = None,
        scm: SourceControl | None = None,
        metrics_source: MetricsSource | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.clock = clock or SystemClock()
        self.db = db or Database.from_url(settings.database_url, schema=settings.database_schema)
        self.metrics = BotMetrics()
        self.instance_id = settings.instance_id or _instance_id()
        self.registry = CommandRegistry()
        self.dispatcher = Dispatcher(self.registry, self.db, self.clock, self.metrics)
        self.scheduler = Scheduler(
            self.db,
            self.clock,
            self.metrics,
            self.instance_id,
            poll_interval=scheduler_poll,
            lease=timedelta(seconds=settings.job_lease_seconds),
        )
        self.outbox = Outbox(self.clock)
        self.authorizer = Authorizer(config.rbac)
        self.events = EventHub()
        self.clusters = clusters or _clusters_from(settings)
        self.scm = scm if scm is not None else _scm_from(settings)
        self.metrics_source = (
            metrics_source if metrics_source is not None else _metrics_from(settings)
        )
        self.outbox_rate = outbox_rate
        self.outbox_burst = outbox_burst
        self.sender: OutboxSender | None = None
        self.slack_poster: SlackPoster | None = None  # set when a Slack token is configured
        self._on_stop: list[Callable[[], object]] = []
        self._started = False
        self._register_families()

    def _register_families(self) -> None:
        # Imported here: command modules import the app type for annotations.
        from bot.deploys.engine import DeployEngine
        from bot.deploys.operations import DeployOperations
        from bot.deploys.service import DeployService
        from commands import deploy as deploy_commands
        from commands import help as help_commands

        help_commands.register(self)
        engine = DeployEngine(
            db=self.db,
            clock=self.clock,
            scheduler=self.scheduler,
            outbox=self.outbox,
            config=self.config,
            clusters=self.clusters,
            scm=self.scm,
            metrics=self.metrics_source,
            events=self.events,
        )
        self.deploys = DeployService(engine, self.authorizer)
        self.deploy_ops = DeployOperations(self.deploys)
        deploy_commands.register(self, self.deploys, self.deploy_ops)

        from bot.core.events import DeployFinished
        from bot.incidents.ingest import AlertIngest
        from bot.incidents.service import IncidentService
        from commands import incident as incident_commands

        self.incidents = IncidentService(
            db=self.db,
            clock=self.clock,
            config=self.config,
            outbox=self.outbox,
            scheduler=self.scheduler,
            auth=self.authorizer,
            events=self.events,
        )
        self.alert_ingest = AlertIngest(self.incidents)
        self.events.subscribe(DeployFinished, self.incidents.on_deploy)
        incident_commands.register(self, self.incidents)

        from bot.core.events import IncidentChanged
        from bot.paging.escalation import Escalator
        from bot.paging.pages import Pager
        from commands import oncall as oncall_commands

        self.escalator = Escalator(
            db=self.db,
            clock=self.clock,
            config=self.config,
            scheduler=self.scheduler,
            incidents=self.incidents,
            pager=Pager(self.config, self.outbox, self.scheduler),
            groups=self.authorizer.groups,
            public_url=self.settings.public_url,
        )
        self.events.subscribe(IncidentChanged, self.escalator.on_incident)
        oncall_commands.register(self, self.escalator)
        self._register_runbooks()

        from commands import stats as stats_commands

        stats_commands.register(self)
        self._register_postmortems()

    def _register_postmortems(self) -> None:
        from bot.core.events import IncidentChanged
        from bot.postmortems.publish import JiraPublisher
        from bot.postmortems.service import PostmortemService
        from commands import postmortem as postmortem_commands
        from commands import postmortem_modal

        self.postmortems = PostmortemService(
            db=self.db, clock=self.clock, config=self.config, outbox=self.outbox,
            scheduler=self.scheduler, incidents=self.incidents,
        )
        jira = _jira_from(self.settings)
        if jira is not None:
            self.on_stop(jira.close)
        self.jira_publisher = JiraPublisher(self.postmortems, jira)
        self.events.subscribe(IncidentChanged, self.postmortems.on_incident)
        postmortem_commands.register(self, self.postmortems)
        postmortem_modal.register(self, self.postmortems)

    def _register_runbooks(self) -> None:
        from bot.core.events import IncidentChanged
        from bot.runbooks.engine import RunEngine
        from bot.runbooks.service import RunbookService
        from bot.runbooks.steps import StepRunner, StepServices
        from commands import runbook as runbook_commands

        loaded, errors = RunbookService.load(self.config)
        for error in errors:
            log.error("runbook not loaded: %s", error)

        runner = StepRunner(
            StepServices(
                db=self.db,
                clock=self.clock,
                config=self.config,
                ops=self.deploy_ops,
                metrics=self.metrics_source,
                http=lambda: self.runbooks.http(),
                # kubectl in a shell step talks to the cluster the bot talks to.
                shell_env={"KUBECONFIG": self.settings.kubeconfig}
                if self.settings.kubeconfig
                else {},
            )
        )
        engine = RunEngine(
            db=self.db,
            clock=self.clock,
            outbox=self.outbox,
            scheduler=self.scheduler,
            incidents=self.incidents,
            runner=runner,
            runbooks=loaded,
        )
        self.runbooks = RunbookService(engine, self.config, self.authorizer, errors)
        self.events.subscribe(IncidentChanged, self.runbooks.on_incident)
        self.on_stop(self.runbooks.close)
        runbook_commands.register(self, self.runbooks)

    def use_deliverer(self, deliverer: Deliverer) -> None:
        """Choose where the outbox delivers (Slack, or the terminal)."""
        self.sender = OutboxSender(
            self.db,
            self.clock,
            self.metrics,
            deliverer,
            self.instance_id,
            rate=self.outbox_rate,
            burst=self.outbox_burst,
        )
        self.outbox.on_commit(self.sender.wake)

    async def prepare_database(self) -> None:
        """SQLite (the embedded default) migrates itself; PostgreSQL is
        migrated by `chatops db upgrade` (an init step), and /readyz says
        not ready until it is."""
        if self.db.dialect == "sqlite":
            await self.db.upgrade()
        elif not await self.db.migrations_current():
            log.error("database schema is not current; run `chatops db upgrade`")

    async def start(self, *, workers: bool = True) -> None:
        await self.prepare_database()
        if workers:
            self.scheduler.start()
            if self.sender is not None:
                self.sender.start()
        self._started = True
        log.info("bot started", extra={"instance": self.instance_id, "db": self.db.dialect})

    async def stop(self) -> None:
        if self.sender is not None:
            await self.sender.stop()
        await self.scheduler.stop()
        for callback in reversed(self._on_stop):
            result = callback()
            if asyncio.iscoroutine(result):
                await result
        await self.db.dispose()
        self._started = False

    def on_stop(self, callback: Callable[[], object]) -> None:
        self._on_stop.append(callback)

    async def send_reply(self, ctx: CommandContext, reply: Reply) -> None:
        """A command's answer goes out through the outbox: to the response_url
        when Slack gave one (it works even where the bot is not a member),
        otherwise as an ephemeral or channel message."""
        async with self.db.transaction() as session:
            if ctx.response_url:
                await self.outbox.respond(
                    session,
                    ctx.response_url,
                    reply,
                    channel=ctx.channel_id,
                    user=ctx.user_id,
                    ephemeral=reply.ephemeral,
                )
            elif reply.ephemeral:
                await self.outbox.ephemeral(
                    session, ctx.channel_id, ctx.user_id, reply, thread_ts=ctx.thread_ts
                )
            else:
                await self.outbox.post(session, ctx.channel_id, reply, thread_ts=ctx.thread_ts)

    async def pending_work(self, horizon: timedelta) -> tuple[int, int]:
        """(undelivered messages, jobs due within `horizon`)."""
        due_by = self.clock.now() + horizon
        async with self.db.transaction() as session:
            messages = (
                await session.exec(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(
                        col(OutboxMessage.status).in_([OutboxStatus.PENDING, OutboxStatus.SENDING])
                    )
                )
            ).one()
            jobs = (
                await session.exec(
                    select(func.count())
                    .select_from(Job)
                    .where(
                        col(Job.status).in_([JobStatus.PENDING, JobStatus.RUNNING]),
                        col(Job.due_at) <= due_by,
                    )
                )
            ).one()
        return int(messages), int(jobs)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is left to say and no job falls due before the
        deadline; False if work was still pending when time ran out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            messages, jobs = await self.pending_work(timedelta(seconds=max(0.0, remaining)))
            if messages == 0 and jobs == 0:
                return True
            if remaining <= 0:
                return False
            await asyncio.sleep(min(0.1, remaining))
