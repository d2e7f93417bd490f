"""Advances deployments: a persisted state machine driven by the scheduler.

One tick = read the stored deployment, do one step against the cluster
(outside any transaction: SQLite must not be held during network calls),
then store the outcome, the transition, the edited message, thread notes
and the next tick in one transaction that also completes the job. The
write is conditional on the row's revision: an abort or approval that
happened meanwhile wins and this tick's result is dropped.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core import audit
from bot.core.chat import Message
from bot.core.clock import Clock
from bot.core.config import Config
from bot.core.db import Database
from bot.core.events import DeployFinished, EventHub
from bot.core.outbox import Outbox
from bot.core.scheduler import JobContext, Scheduler
from bot.deploys import gating
from bot.deploys.models import DeployLock, Deployment, DeployState, DeployTransition, DesiredState
from bot.deploys.ports import ClusterProvider, MetricsSource, SourceControl
from bot.deploys.render import render_deploy
from bot.deploys.rollout import image_of, tag_of
from bot.deploys.strategies import (
    STRATEGIES,
    DeployContext,
    Step,
    Strategy,
    set_image,
    wait_rollout,
)

log = logging.getLogger("chatops.deploys")

TICK = "deploy.tick"
RETIRE_SLOT = "deploy.retire_slot"
APPROVAL_EXPIRY = "deploy.approval_expiry"
MAX_CLUSTER_ERRORS = 5
BOT = "chatops-bot"


class DeployEngine:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        scheduler: Scheduler,
        outbox: Outbox,
        config: Config,
        clusters: ClusterProvider,
        scm: SourceControl | None,
        metrics: MetricsSource | None,
        events: EventHub,
    ) -> None:
        self.db, self.clock, self.scheduler, self.outbox = db, clock, scheduler, outbox
        self.config, self.clusters, self.scm, self.metrics = config, clusters, scm, metrics
        self.events = events
        scheduler.handler(TICK)(self._on_tick)
        scheduler.handler(RETIRE_SLOT)(self._retire_slot)
        scheduler.handler(APPROVAL_EXPIRY)(self._approval_expiry)

    # -- helpers used by the service too -------------------------------------

    def cluster_for(self, environment: str) -> Any:
        env = self.config.environment(environment)
        return self.clusters.for_context(env.kube_context if env else None)

    async def schedule_tick(self, session: AsyncSession, d: Deployment, delay: float = 0.0) -> None:
        await self.scheduler.schedule(session, TICK, {"id": d.id}, delay=delay, key=d.key)

    def message(self, d: Deployment) -> Message:
        svc = self.config.service(d.service)
        steps = len(svc.deploy.canary_steps) if svc else 0
        return render_deploy(d, self.clock.now(), steps=steps)

    async def transition(
        self, session: AsyncSession, d: Deployment, state: DeployState, reason: str
    ) -> None:
        session.add(
            DeployTransition(
                deployment_id=d.id or 0,
                at=self.clock.now(),
                from_state=d.state,
                to_state=state,
                reason=reason,
            )
        )
        d.state = state
        if state in (DeployState.ROLLING_BACK, DeployState.FAILED, DeployState.REJECTED) and reason:
            d.error = reason
        if state.terminal:
            await self._finalize(session, d)

    async def note(self, session: AsyncSession, d: Deployment, text: str | Message) -> None:
        message = text if isinstance(text, Message) else Message(text=text)
        await self.outbox.post(session, "", message, thread_key=d.key)

    # -- the tick -----------------------------------------------------------

    async def _on_tick(self, job: JobContext) -> None:
        async with self.db.transaction() as session:
            d = await session.get(Deployment, int(job.payload["id"]))
        if d is None or not d.active or d.deploy_state.terminal:
            return
        revision = d.revision
        step = await self._step(d)
        async with job.transaction() as session:
            row = await session.get(Deployment, d.id, with_for_update=True)
            if row is None or row.revision != revision:
                log.info(
                    "deploy changed during tick; dropping its result", extra={"deployment": d.id}
                )
                await job.finish(session)
                return
            row.progress = dict(d.progress)
            row.previous_image, row.previous_version = d.previous_image, d.previous_version
            row.started_at = row.started_at or d.started_at
            row.github_deployment_id = row.github_deployment_id or d.github_deployment_id
            for text in step.notes:
                await self.note(session, row, text)
            if step.state is not None and step.state != row.deploy_state:
                await self.transition(session, row, step.state, step.reason)
                if step.reason and not step.state.terminal:
                    await self.note(session, row, f"{step.state.value}: {step.reason}")
            row.revision += 1
            session.add(row)
            await self.outbox.update(session, row.key, self.message(row))
            if not row.deploy_state.terminal and row.deploy_state != DeployState.PAUSED:
                await self.schedule_tick(session, row, delay=step.wait)
            await job.finish(session)

    async def _step(self, d: Deployment) -> Step:
        svc = self.config.service(d.service)
        if svc is None:
            return Step(DeployState.FAILED, f"service {d.service} is no longer configured")
        started = d.started_at or self.clock.now()
        ctx = DeployContext(
            d,
            svc,
            self.cluster_for(d.environment),
            svc.namespace_for(d.environment),
            (self.clock.now() - started).total_seconds(),
        )
        try:
            step = await self._dispatch(ctx)
            d.progress.pop("cluster_errors", None)
            if step.state == DeployState.COMPLETED or (
                d.kind == "rollback" and step.state == DeployState.ROLLED_BACK
            ):
                # What now serves, for /drift (read here: no I/O inside the commit).
                workload = self._serving_workload(d, ctx.name)
                obj = await ctx.cluster.get_deployment(ctx.namespace, workload)
                if obj is not None:
                    d.progress["final_replicas"] = int(obj["spec"].get("replicas", 0))
            return step
        except Exception as exc:
            errors = int(d.progress.get("cluster_errors", 0)) + 1
            d.progress["cluster_errors"] = errors
            log.warning(
                "deploy step failed",
                extra={"deployment": d.id, "state": d.state, "error": str(exc), "attempt": errors},
            )
            if errors < MAX_CLUSTER_ERRORS:
                return Step(wait=min(30.0, 2.0**errors))
            if d.deploy_state == DeployState.ROLLING_BACK:
                return Step(DeployState.FAILED, f"rollback failed: {exc}")
            return Step(DeployState.ROLLING_BACK, f"giving up after {errors} errors: {exc}")

    async def _dispatch(self, ctx: DeployContext) -> Step:
        d = ctx.deployment
        state = d.deploy_state
        if d.kind == "rollback":
            return await self._rollback_step(ctx)
        strategy = STRATEGIES[d.strategy]
        if state in (DeployState.REQUESTED, DeployState.CONFIGURING):
            return await self._configure(ctx, strategy)
        if state == DeployState.ROLLING_OUT:
            return await strategy.progress(ctx)
        if state == DeployState.HEALTH_GATING:
            return await gating.health_gate(ctx, self.metrics, self.clock.now(), strategy)
        if state == DeployState.PROMOTING:
            d.progress["promoting"] = True
            return await strategy.promote(ctx)
        if state == DeployState.ROLLING_BACK:
            return await strategy.roll_back(ctx)
        return Step(wait=5.0)

    async def _configure(self, ctx: DeployContext, strategy: Strategy) -> Step:
        d = ctx.deployment
        primary = await ctx.cluster.get_deployment(ctx.namespace, ctx.name)
        if primary is None:
            return Step(
                DeployState.FAILED,
                f"Deployment {ctx.namespace}/{ctx.name} does not exist in the cluster",
            )
        if d.previous_image is None:
            d.previous_image = image_of(primary, ctx.container)
            d.previous_version = tag_of(d.previous_image) if d.previous_image else None
        d.started_at = self.clock.now()
        await self._github_deployment(d)
        await self._github_status(d, "in_progress", f"{d.strategy} rollout started")
        return await strategy.start(ctx)

    async def _rollback_step(self, ctx: DeployContext) -> Step:
        """The emergency path: straight to the target, no steps, no analysis."""
        d = ctx.deployment
        if d.deploy_state in (DeployState.REQUESTED, DeployState.CONFIGURING):
            d.started_at = d.started_at or self.clock.now()
            selector = d.progress.get("switch_to_selector")
            cleanup = d.progress.get("cleanup")  # a blue-green slot that never got traffic
            began = time.perf_counter()
            if selector is not None:
                await ctx.cluster.patch_service(
                    ctx.namespace, ctx.name, {"spec": {"selector": selector}}
                )
            if cleanup is not None:
                await ctx.cluster.scale_deployment(ctx.namespace, str(cleanup), 0)
            if selector is None and cleanup is None:
                canary = f"{ctx.name}-canary"
                if await ctx.cluster.get_deployment(ctx.namespace, canary) is not None:
                    await ctx.cluster.scale_deployment(ctx.namespace, canary, 0)
                await set_image(ctx, self._workload(d, ctx.name), d.image)
            requested_ms = (self.clock.now() - d.created_at).total_seconds() * 1000
            d.progress["patch_ms"] = round(requested_ms, 1)
            log.info(
                "rollback patch sent",
                extra={
                    "deployment": d.id,
                    "service": d.service,
                    "environment": d.environment,
                    "command_to_patch_ms": round(requested_ms, 1),
                    "patch_call_ms": round((time.perf_counter() - began) * 1000, 1),
                },
            )
            if selector is not None:
                return Step(
                    DeployState.ROLLED_BACK, "Service switched back to the previous slot", wait=0
                )
            if cleanup is not None:
                return Step(
                    DeployState.ROLLED_BACK,
                    f"{cleanup} scaled to 0; the Service never left the running slot",
                    wait=0,
                )
            return Step(DeployState.ROLLING_BACK, f"image set back to {d.image}", wait=0.5)
        waiting = await wait_rollout(
            ctx, self._workload(d, ctx.name), ctx.service.deploy.rollout_timeout.total_seconds() * 2
        )
        if waiting is None:
            return Step(DeployState.ROLLED_BACK, f"running {d.version} again", wait=0)
        if waiting.state == DeployState.ROLLING_BACK:
            return Step(DeployState.FAILED, f"rollback did not converge: {waiting.reason}")
        return waiting

    @staticmethod
    def _serving_workload(d: Deployment, default: str) -> str:
        if d.kind == "rollback":
            return str(
                d.progress.get("switch_to_deployment") or d.progress.get("workload") or default
            )
        if d.strategy == "bluegreen":
            return str(d.progress.get("target", {}).get("deployment") or default)
        return default

    @staticmethod
    def _workload(d: Deployment, default: str) -> str:
        return str(d.progress.get("workload") or default)

    # -- endings --------------------------------------------------------------

    async def _finalize(self, session: AsyncSession, d: Deployment) -> None:
        now = self.clock.now()
        d.active, d.finished_at = False, now
        state = d.deploy_state
        if state == DeployState.COMPLETED or (
            d.kind == "rollback" and state == DeployState.ROLLED_BACK
        ):
            session.add(await self._desired(session, d))
        if d.kind == "deploy" and state == DeployState.COMPLETED and d.strategy == "bluegreen":
            svc = self.config.service(d.service)
            old = d.progress.get("active", {}).get("deployment")
            if svc is not None and old:
                await self.scheduler.schedule(
                    session,
                    RETIRE_SLOT,
                    {"deployment_id": d.id, "name": old},
                    delay=svc.deploy.keep_previous.total_seconds(),
                    key=f"retire-{d.id}",
                )
        failed = state in (DeployState.FAILED, DeployState.ROLLED_BACK)
        if failed and self.config.deploys.auto_lock_on_failure and state != DeployState.REJECTED:
            await self._auto_lock(session, d)
        await audit.record(
            session,
            at=now,
            actor=d.requested_by,
            action=f"{d.kind}.result",
            outcome="ok"
            if state in (DeployState.COMPLETED,)
            or (d.kind == "rollback" and state == DeployState.ROLLED_BACK)
            else "error",
            target=d.service,
            environment=d.environment,
            channel=d.channel,
            transport="scheduler",
            detail={"deployment": d.id, "state": d.state, "version": d.version, "error": d.error},
        )
        await self.events.emit(
            session,
            DeployFinished(
                deployment_id=d.id or 0,
                kind=d.kind,
                service=d.service,
                environment=d.environment,
                version=d.version,
                previous_version=d.previous_version,
                outcome=d.state,
                actor=d.requested_by,
                at=now,
            ),
        )
        github_state = {
            "Completed": "success",
            "RolledBack": "failure",
            "Failed": "failure",
            "Rejected": "inactive",
        }[d.state]
        if d.kind == "rollback" and state == DeployState.ROLLED_BACK:
            github_state = "success"
        await self.note(session, d, self._summary(d))
        await self._github_status(d, github_state, f"{d.state}: {d.error or 'ok'}"[:140])

    def _summary(self, d: Deployment) -> str:
        took = (
            (d.finished_at - (d.started_at or d.created_at)).total_seconds() if d.finished_at else 0
        )
        what = "Rollback" if d.kind == "rollback" else "Deploy"
        text = (
            f"{what} #{d.id} {d.state} after {int(took)}s: "
            f"{d.service} {d.version} in {d.environment}."
        )
        if d.error:
            text += f"\nReason: {d.error}"
        return text

    async def _desired(self, session: AsyncSession, d: Deployment) -> DesiredState:
        row = await session.get(DesiredState, (d.service, d.environment))
        if row is None:
            row = DesiredState(service=d.service, environment=d.environment, updated_by=BOT)
        row.image, row.updated_by, row.updated_at = d.image, d.requested_by, self.clock.now()
        if "final_replicas" in d.progress:
            row.replicas = int(d.progress["final_replicas"])
        svc = self.config.service(d.service)
        row.workload = self._serving_workload(d, svc.k8s_deployment if svc else d.service)
        return row

    async def _auto_lock(self, session: AsyncSession, d: Deployment) -> None:
        if await session.get(DeployLock, (d.service, d.environment)) is not None:
            return
        what = "rollback" if d.kind == "rollback" else "deploy"
        session.add(
            DeployLock(
                service=d.service,
                environment=d.environment,
                owner=BOT,
                automatic=True,
                created_at=self.clock.now(),
                reason=f"{what} #{d.id} of {d.version} ended {d.state}: "
                f"{d.error or 'see the thread'}. /unlock when it is safe.",
            )
        )
        await self.note(
            session,
            d,
            f":lock: {d.service} in {d.environment} is locked after "
            f"this {what}; `/unlock {d.service} {d.environment}` when "
            "it is safe to deploy again.",
        )

    async def _github_deployment(self, d: Deployment) -> None:
        """Record the deploy as a GitHub Deployment (idempotent: a repeated tick
        finds the one it made through the unique chatops_id in the payload)."""
        svc = self.config.service(d.service)
        env = self.config.environment(d.environment)
        if self.scm is None or svc is None or not svc.github_repo or d.github_deployment_id:
            return
        try:
            d.github_deployment_id = await self.scm.create_deployment(
                svc.github_repo,
                ref=d.version,
                environment=d.environment,
                description=f"{d.strategy} deploy #{d.id} by {d.requested_by} via chatops-bot",
                payload={
                    "chatops_id": f"{d.service}/{d.environment}/{d.id}/"
                    f"{d.created_at.timestamp():.0f}",
                    "strategy": d.strategy,
                    "requested_by": d.requested_by,
                },
                production=bool(env and env.protected),
            )
            await self._github_status(d, "queued", f"deploy #{d.id} accepted")
        except Exception:
            log.warning(
                "could not create the GitHub deployment", extra={"deployment": d.id}, exc_info=True
            )

    async def _github_status(self, d: Deployment, state: str, description: str) -> None:
        svc = self.config.service(d.service)
        if self.scm is None or svc is None or not svc.github_repo or not d.github_deployment_id:
            return
        try:
            await self.scm.set_deployment_status(
                svc.github_repo, d.github_deployment_id, state, description=description
            )
        except Exception:
            # GitHub is a record, not a gate, once the deploy is under way.
            log.warning(
                "could not update the GitHub deployment status",
                extra={"deployment": d.id, "state": state},
                exc_info=True,
            )

    # -- background jobs -----------------------------------------------------

    async def _retire_slot(self, job: JobContext) -> None:
        async with self.db.transaction() as session:
            d = await session.get(Deployment, int(job.payload["deployment_id"]))
        svc = self.config.service(d.service) if d else None
        if d is None or svc is None:
            return
        cluster, ns, name = (
            self.cluster_for(d.environment),
            svc.namespace_for(d.environment),
            str(job.payload["name"]),
        )
        service = await cluster.get_service(ns, svc.k8s_deployment)
        slot = await cluster.get_deployment(ns, name)
        selector = (service or {}).get("spec", {}).get("selector") or {}
        labels = (slot or {}).get("spec", {}).get("template", {}).get("metadata", {}).get(
            "labels"
        ) or {}
        if slot is None or all(labels.get(k) == v for k, v in selector.items()):
            return  # gone, or serving again after a rollback: keep it
        await cluster.scale_deployment(ns, name, 0)
        async with job.transaction() as session:
            await self.note(
                session,
                d,
                f"{name} scaled to 0 (kept warm for "
                f"{int(svc.deploy.keep_previous.total_seconds() // 60)}m).",
            )
            await job.finish(session)

    async def _approval_expiry(self, job: JobContext) -> None:
        async with job.transaction() as session:
            d = await session.get(Deployment, int(job.payload["id"]), with_for_update=True)
            if d is not None and d.deploy_state == DeployState.AWAITING_APPROVAL:
                await self.transition(
                    session, d, DeployState.REJECTED, "nobody approved it in time"
                )
                d.revision += 1
                session.add(d)
                await self.outbox.update(session, d.key, self.message(d))
            await job.finish(session)


def now_iso(now: datetime) -> str:
    return now.isoformat()
