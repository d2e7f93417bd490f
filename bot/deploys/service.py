"""Deploy operations people ask for: deploy, approve, reject, promote, abort
and roll back. Every check that can say no (bot/deploys/preflight.py) runs
before anything changes, and every refusal is a Refused (audited by the dispatcher)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core import audit
from bot.core.audit import Actor
from bot.core.config import Environment, Role, Service
from bot.core.durations import format_duration
from bot.core.errors import ChatOpsError, NotFound, Refused
from bot.core.rbac import Authorizer
from bot.deploys.engine import APPROVAL_EXPIRY, DeployEngine
from bot.deploys.freeze import active_freeze
from bot.deploys.models import Deployment, DeployState, DesiredState
from bot.deploys.preflight import Plan, Preflight, check_lock
from bot.deploys.rollout import tag_of

_IN_FLIGHT = (
    DeployState.CONFIGURING,
    DeployState.ROLLING_OUT,
    DeployState.HEALTH_GATING,
    DeployState.PROMOTING,
    DeployState.PAUSED,
    DeployState.REQUESTED,
)


class DeployService:
    def __init__(self, engine: DeployEngine, auth: Authorizer) -> None:
        self.engine = engine
        self.auth = auth
        self.preflight = Preflight(engine, auth)
        self.db, self.clock, self.config = engine.db, engine.clock, engine.config

    # -- lookups shared by the commands --------------------------------------

    def service(self, name: str, action: str) -> Service:
        svc = self.config.service(name)
        if svc is None:
            known = ", ".join(s.name for s in self.config.services) or "none"
            raise Refused(
                f"There is no service '{name}' (known: {known}).",
                action=action,
                target=name,
                reason="unknown_service",
            )
        return svc

    def environment(self, svc: Service, name: str | None, action: str) -> Environment:
        env_name = name or svc.home_environment
        env = self.config.environment(env_name)
        if env is None or env_name not in svc.environments:
            raise Refused(
                f"{svc.name} has no environment '{env_name}' "
                f"(it has: {', '.join(svc.environments)}).",
                action=action,
                target=svc.name,
                environment=env_name,
                reason="unknown_environment",
            )
        return env

    async def active(self, session: AsyncSession, service: str, env: str) -> Deployment | None:
        return (
            await session.exec(
                select(Deployment).where(
                    Deployment.service == service,
                    Deployment.environment == env,
                    col(Deployment.active).is_(True),
                )
            )
        ).first()

    async def get(self, deployment_id: int) -> Deployment:
        async with self.db.transaction() as session:
            d = await session.get(Deployment, deployment_id)
        if d is None:
            raise NotFound(f"There is no deploy #{deployment_id}.")
        return d

    # -- deploy ---------------------------------------------------------------

    async def request(
        self,
        who: Actor,
        service: str,
        version: str,
        env_name: str | None,
        strategy: str | None,
        *,
        dry_run: bool = False,
        force: bool = False,
        reason: str | None = None,
    ) -> Plan:
        svc = self.service(service, "deploy")
        env = self.environment(svc, env_name, "deploy")
        await self.auth.require(who.user, env.name, Role.DEPLOYER, action="deploy", target=svc.name)
        forced = await self.preflight.freeze(who, svc, env, force, reason)
        strategy = strategy or svc.default_strategy
        async with self.db.transaction() as session:
            await check_lock(session, who, svc, env.name, "deploy")
            active = await self.active(session, svc.name, env.name)
            desired = await session.get(DesiredState, (svc.name, env.name))
        if active is not None:
            raise Refused(
                f"Deploy #{active.id} of {svc.name} to {env.name} is still "
                f"{active.state} (by <@{active.requested_by}>).",
                action="deploy",
                target=svc.name,
                environment=env.name,
                reason="in_progress",
            )
        if svc.deploy.analysis is not None and self.engine.metrics is None:
            raise ChatOpsError(f"{svc.name} has an analysis gate but PROMETHEUS_URL is not set.")
        image = f"{svc.image}:{svc.deploy.tag.format(version=version)}"
        workload = desired.workload if desired else None
        running = await self.preflight.running_image(svc, env, workload)
        if running == image:
            raise ChatOpsError(f"{svc.name} already runs {version} in {env.name}; "
                               "nothing to deploy.")
        sha, commit_time, checks = await self.preflight.source(svc, env, version)
        changelog = await self.preflight.changelog(svc, running, version)
        plan = Plan(
            None,
            svc.name,
            env.name,
            version,
            image,
            strategy,
            tag_of(running) if running else None,
            env.needs_approval,
            checks,
            changelog,
            dry_run,
        )
        if dry_run:
            return plan
        now = self.clock.now()
        d = Deployment(
            service=svc.name,
            environment=env.name,
            version=version,
            image=image,
            strategy=strategy,
            requested_by=who.user,
            channel=who.channel,
            previous_image=running,
            previous_version=plan.running,
            sha=sha,
            commit_time=commit_time,
            forced_reason=forced,
            created_at=now,
            state=DeployState.AWAITING_APPROVAL if env.needs_approval else DeployState.CONFIGURING,
        )
        try:
            async with self.db.transaction() as session:
                session.add(d)
                await session.flush()
                await self._announce(session, d, plan, who)
        except IntegrityError:
            raise Refused(
                f"Another deploy of {svc.name} to {env.name} started a moment ago.",
                action="deploy",
                target=svc.name,
                environment=env.name,
                reason="in_progress",
            ) from None
        plan.deployment_id = d.id
        return plan

    async def _announce(self, session: AsyncSession, d: Deployment, plan: Plan, who: Actor) -> None:
        engine = self.engine
        await engine.outbox.post(
            session, self.config.channels.deploys, engine.message(d), key=d.key
        )
        lines = [f"Requested by <@{who.user}>: {plan.image}", f"Checks: {plan.checks}"]
        if plan.changelog:
            lines.append(
                "Changes since "
                + (plan.running or "?")
                + ":\n"
                + "\n".join(f"• {c}" for c in plan.changelog)
            )
        if d.deploy_state == DeployState.AWAITING_APPROVAL:
            lines.append(
                f"{d.environment} is protected: an approver other than "
                f"<@{who.user}> must press Approve."
            )
        await engine.note(session, d, "\n".join(lines))
        await audit.by(
            session,
            who,
            at=d.created_at,
            action="deploy",
            target=d.service,
            environment=d.environment,
            detail={
                "deployment": d.id,
                "version": d.version,
                "strategy": d.strategy,
                "forced": d.forced_reason,
            },
        )
        if d.deploy_state == DeployState.AWAITING_APPROVAL:
            await engine.scheduler.schedule(
                session,
                APPROVAL_EXPIRY,
                {"id": d.id},
                delay=self.config.deploys.approval_timeout.total_seconds(),
                key=f"deploy-approval-{d.id}",
            )
        else:
            await engine.schedule_tick(session, d)

    # -- people deciding --------------------------------------------------------

    async def approve(self, who: Actor, deployment_id: int) -> Deployment:
        d = await self.get(deployment_id)
        if d.deploy_state != DeployState.AWAITING_APPROVAL:
            raise ChatOpsError(f"Deploy #{d.id} is {d.state}; there is nothing to approve.")
        if who.user == d.requested_by:
            raise Refused(
                "You cannot approve your own deploy; another approver must.",
                action="deploy.approve",
                target=d.service,
                environment=d.environment,
                reason="self_approval",
            )
        await self.auth.require(
            who.user, d.environment, Role.APPROVER, action="deploy.approve", target=d.service
        )
        frozen = active_freeze(self.config, d.environment, self.clock.now())
        if frozen is not None and not d.forced_reason:
            raise Refused(
                f"{d.environment} is frozen now ({frozen[0].reason}).",
                action="deploy.approve",
                target=d.service,
                environment=d.environment,
                reason="freeze",
            )
        return await self._decide(
            who,
            d,
            DeployState.CONFIGURING,
            f"approved by <@{who.user}>",
            "deploy.approve",
            approved=True,
        )

    async def reject(self, who: Actor, deployment_id: int) -> Deployment:
        d = await self.get(deployment_id)
        if d.deploy_state != DeployState.AWAITING_APPROVAL:
            raise ChatOpsError(f"Deploy #{d.id} is {d.state}; there is nothing to reject.")
        if who.user != d.requested_by:  # withdrawing one's own request needs no role
            await self.auth.require(
                who.user, d.environment, Role.APPROVER, action="deploy.reject", target=d.service
            )
        return await self._decide(
            who, d, DeployState.REJECTED, f"rejected by <@{who.user}>", "deploy.reject"
        )

    async def promote(self, who: Actor, deployment_id: int) -> Deployment:
        d = await self.get(deployment_id)
        if d.deploy_state != DeployState.PAUSED:
            raise ChatOpsError(f"Deploy #{d.id} is {d.state}, not paused.")
        await self.auth.require(
            who.user, d.environment, Role.DEPLOYER, action="deploy.promote", target=d.service
        )
        return await self._decide(
            who,
            d,
            DeployState.HEALTH_GATING,
            f"promoted past inconclusive analysis by <@{who.user}>",
            "deploy.promote",
            promote=True,
        )

    async def abort(self, who: Actor, deployment_id: int) -> Deployment:
        d = await self.get(deployment_id)
        if d.deploy_state not in _IN_FLIGHT:
            raise ChatOpsError(f"Deploy #{d.id} is {d.state}; there is nothing to abort.")
        await self.auth.require(
            who.user, d.environment, Role.DEPLOYER, action="deploy.abort", target=d.service
        )
        return await self._decide(
            who, d, DeployState.ROLLING_BACK, f"aborted by <@{who.user}>", "deploy.abort"
        )

    async def _decide(
        self,
        who: Actor,
        d: Deployment,
        state: DeployState,
        reason: str,
        action: str,
        *,
        approved: bool = False,
        promote: bool = False,
    ) -> Deployment:
        async with self.db.transaction() as session:
            row = await session.get(Deployment, d.id, with_for_update=True)
            assert row is not None
            if row.revision != d.revision:
                raise ChatOpsError(f"Deploy #{d.id} changed meanwhile ({row.state}); try again.")
            if approved:
                row.approved_by = who.user
                await self.engine.scheduler.cancel(session, f"deploy-approval-{row.id}")
            if promote:
                row.progress = {**row.progress, "promote_requested": True}
            await self.engine.transition(session, row, state, reason)
            row.revision += 1
            session.add(row)
            await self.engine.note(session, row, f"{state.value}: {reason}")
            await self.engine.outbox.update(session, row.key, self.engine.message(row))
            if not state.terminal:
                await self.engine.schedule_tick(session, row)
            await audit.by(
                session,
                who,
                at=self.clock.now(),
                action=action,
                target=row.service,
                environment=row.environment,
                detail={"deployment": row.id},
            )
            return row

    # -- roll back ----------------------------------------------------------------

    async def rollback(
        self, who: Actor, service: str, env_name: str | None, to_version: str | None
    ) -> Deployment:
        """The emergency path: no locks, freezes, steps or analysis stand in its way."""
        svc = self.service(service, "rollback")
        env = self.environment(svc, env_name, "rollback")
        await self.auth.require(
            who.user, env.name, Role.DEPLOYER, action="rollback", target=svc.name
        )
        cluster = self.engine.cluster_for(env.name)
        ns = svc.namespace_for(env.name)
        async with self.db.transaction() as session:
            active = await self.active(session, svc.name, env.name)
            last = (
                await session.exec(
                    select(Deployment)
                    .where(
                        Deployment.service == svc.name,
                        Deployment.environment == env.name,
                        Deployment.kind == "deploy",
                        Deployment.state == DeployState.COMPLETED,
                    )
                    .order_by(col(Deployment.id).desc())
                    .limit(1)
                )
            ).first()
        progress: dict[str, object] = {}
        async with self.db.transaction() as session:
            desired = await session.get(DesiredState, (svc.name, env.name))
        if desired is not None and desired.workload:
            progress["workload"] = desired.workload  # blue-green: the slot serving now
        workload = desired.workload if desired else None
        current = await self.preflight.running_image(svc, env, workload)
        target: str | None = None
        if to_version:
            target = f"{svc.image}:{svc.deploy.tag.format(version=to_version)}"
        if active is not None and active.kind == "deploy":
            target = target or active.previous_image
            if active.strategy == "bluegreen" and "target" in active.progress:
                progress["cleanup"] = active.progress["target"]["deployment"]
        elif last is not None:
            target = target or last.previous_image
            if last.strategy == "bluegreen" and "active" in last.progress:
                old = last.progress["active"]
                slot = await cluster.get_deployment(ns, old["deployment"])
                if slot is not None and int(slot["spec"].get("replicas", 0)) > 0:
                    progress.update(
                        switch_to_selector=old["selector"], switch_to_deployment=old["deployment"]
                    )
        if target is None:
            raise ChatOpsError(
                f"I have no earlier version of {svc.name} in {env.name} on "
                f"record; name one: /rollback {svc.name} in {env.name} to <version>"
            )
        now = self.clock.now()
        async with self.db.transaction() as session:
            if active is not None:
                row = await session.get(Deployment, active.id, with_for_update=True)
                if row is not None and row.active:
                    await self.engine.transition(
                        session,
                        row,
                        DeployState.ROLLED_BACK,
                        f"superseded by a rollback by <@{who.user}>",
                    )
                    row.revision += 1
                    session.add(row)
                    await self.engine.outbox.update(session, row.key, self.engine.message(row))
                    await session.flush()
            d = Deployment(
                kind="rollback",
                service=svc.name,
                environment=env.name,
                version=tag_of(target),
                image=target,
                strategy=svc.default_strategy,
                requested_by=who.user,
                channel=who.channel,
                previous_image=current,
                previous_version=tag_of(current) if current else None,
                state=DeployState.CONFIGURING,
                created_at=now,
                progress=progress,
            )
            session.add(d)
            await session.flush()
            await self.engine.outbox.post(
                session, self.config.channels.deploys, self.engine.message(d), key=d.key
            )
            await audit.by(
                session,
                who,
                at=now,
                action="rollback",
                target=svc.name,
                environment=env.name,
                detail={
                    "deployment": d.id,
                    "to": target,
                    "from": current,
                    "aborted": active.id if active else None,
                },
            )
            await self.engine.schedule_tick(session, d)
        return d

    def describe_wait(self, seconds: float) -> str:
        return format_duration(seconds)
