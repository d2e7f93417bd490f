"""Scale, lock, unlock, and the read-only views: status, history, drift."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import col, select

from bot.core import audit
from bot.core.audit import Actor
from bot.core.chat import Message
from bot.core.config import Role
from bot.core.durations import format_duration
from bot.core.errors import ChatOpsError, Refused
from bot.core.events import ServiceScaled
from bot.deploys.models import DeployLock, Deployment, DesiredState, ScaleEvent
from bot.deploys.preflight import check_lock
from bot.deploys.rollout import image_of, rollout_status
from bot.deploys.service import DeployService
from bot.deploys.strategies import image_patch


@dataclass
class Drift:
    service: str
    environment: str
    workload: str
    differences: list[str]
    desired: DesiredState


class DeployOperations:
    def __init__(self, deploys: DeployService) -> None:
        self.deploys = deploys
        self.engine = deploys.engine
        self.db, self.clock, self.config = deploys.db, deploys.clock, deploys.config

    async def _workload(self, service: str, env: str, default: str) -> str:
        async with self.db.transaction() as session:
            desired = await session.get(DesiredState, (service, env))
        return desired.workload if desired is not None and desired.workload else default

    # -- scale -------------------------------------------------------------------

    async def scale(self, who: Actor, service: str, replicas: int, env_name: str | None) -> str:
        svc = self.deploys.service(service, "scale")
        env = self.deploys.environment(svc, env_name, "scale")
        await self.deploys.auth.require(
            who.user, env.name, Role.DEPLOYER, action="scale", target=svc.name
        )
        bounds = svc.replicas
        if not bounds.min <= replicas <= bounds.max:
            raise Refused(
                f"{svc.name} runs between {bounds.min} and {bounds.max} replicas; "
                f"{replicas} is outside that.",
                action="scale",
                target=svc.name,
                environment=env.name,
                reason="bounds",
            )
        now = self.clock.now()
        async with self.db.transaction() as session:
            await check_lock(session, who, svc, env.name, "scale")
            active = await self.deploys.active(session, svc.name, env.name)
            last = (
                await session.exec(
                    select(ScaleEvent)
                    .where(ScaleEvent.service == svc.name, ScaleEvent.environment == env.name)
                    .order_by(col(ScaleEvent.at).desc())
                    .limit(1)
                )
            ).first()
        if active is not None:
            raise Refused(
                f"Deploy #{active.id} of {svc.name} to {env.name} is in progress; "
                "scale when it is done.",
                action="scale",
                target=svc.name,
                environment=env.name,
                reason="in_progress",
            )
        if last is not None and now - last.at < svc.scale_cooldown:
            wait = (svc.scale_cooldown - (now - last.at)).total_seconds()
            raise Refused(
                f"{svc.name} in {env.name} was scaled {format_duration(now - last.at)} "
                f"ago; the cooldown is {format_duration(svc.scale_cooldown)}. "
                f"Try again in {format_duration(wait)}.",
                action="scale",
                target=svc.name,
                environment=env.name,
                reason="cooldown",
            )
        ns = svc.namespace_for(env.name)
        workload = await self._workload(svc.name, env.name, svc.k8s_deployment)
        cluster = self.engine.cluster_for(env.name)
        current = await cluster.get_deployment(ns, workload)
        if current is None:
            raise ChatOpsError(f"Deployment {ns}/{workload} does not exist.")
        previous = int(current["spec"].get("replicas", 0))
        await cluster.scale_deployment(ns, workload, replicas)
        async with self.db.transaction() as session:
            session.add(
                ScaleEvent(
                    service=svc.name,
                    environment=env.name,
                    replicas=replicas,
                    previous=previous,
                    by=who.user,
                    at=now,
                )
            )
            desired = await session.get(DesiredState, (svc.name, env.name)) or DesiredState(
                service=svc.name,
                environment=env.name,
                image=image_of(current, svc.container),
                workload=workload,
                updated_by=who.user,
                updated_at=now,
            )
            desired.replicas, desired.updated_by, desired.updated_at = replicas, who.user, now
            session.add(desired)
            text = (
                f":straight_ruler: <@{who.user}> scaled {svc.name} in {env.name}: "
                f"{previous} → {replicas}"
            )
            await self.engine.outbox.post(session, self.config.channels.deploys, Message(text=text))
            await audit.by(
                session,
                who,
                at=now,
                action="scale",
                target=svc.name,
                environment=env.name,
                detail={"replicas": replicas, "previous": previous},
            )
            await self.engine.events.emit(
                session, ServiceScaled(svc.name, env.name, replicas, previous, who.user, now)
            )
        return f"Scaled {svc.name} in {env.name} from {previous} to {replicas} replicas."

    # -- locks ---------------------------------------------------------------------

    async def lock(self, who: Actor, service: str, env_name: str, reason: str, force: bool) -> str:
        svc = self.deploys.service(service, "lock")
        env = self.deploys.environment(svc, env_name, "lock")
        await self.deploys.auth.require(
            who.user, env.name, Role.DEPLOYER, action="lock", target=svc.name
        )
        now = self.clock.now()
        async with self.db.transaction() as session:
            existing = await session.get(DeployLock, (svc.name, env.name), with_for_update=True)
            if existing is not None and existing.owner != who.user:
                if not force:
                    raise Refused(
                        f"{svc.name} in {env.name} is already locked by "
                        f"<@{existing.owner}>: {existing.reason}. An admin can take "
                        "it over with --force.",
                        action="lock",
                        target=svc.name,
                        environment=env.name,
                        reason="locked",
                    )
                await self.deploys.auth.require(
                    who.user, env.name, Role.ADMIN, action="lock.force", target=svc.name
                )
            if existing is not None:
                await session.delete(existing)
                await session.flush()
            session.add(
                DeployLock(
                    service=svc.name,
                    environment=env.name,
                    owner=who.user,
                    reason=reason,
                    created_at=now,
                )
            )
            taken = f" (taken over from <@{existing.owner}>)" if existing and force else ""
            await self.engine.outbox.post(
                session,
                self.config.channels.deploys,
                Message(
                    text=f":lock: <@{who.user}> locked {svc.name} in {env.name}{taken}: {reason}"
                ),
            )
            await audit.by(
                session,
                who,
                at=now,
                action="lock.force" if taken else "lock",
                target=svc.name,
                environment=env.name,
                detail={"reason": reason, "previous_owner": existing.owner if existing else None},
            )
        return f"Locked {svc.name} in {env.name}: {reason}{taken}"

    async def unlock(self, who: Actor, service: str, env_name: str) -> str:
        svc = self.deploys.service(service, "unlock")
        env = self.deploys.environment(svc, env_name, "unlock")
        now = self.clock.now()
        async with self.db.transaction() as session:
            lock = await session.get(DeployLock, (svc.name, env.name), with_for_update=True)
            if lock is None:
                raise ChatOpsError(f"{svc.name} in {env.name} is not locked.")
            # Your own lock and the bot's automatic ones need the deployer
            # role; someone else's needs an approver.
            needed = Role.DEPLOYER if lock.owner == who.user or lock.automatic else Role.APPROVER
            await self.deploys.auth.require(
                who.user, env.name, needed, action="unlock", target=svc.name
            )
            await session.delete(lock)
            await self.engine.outbox.post(
                session,
                self.config.channels.deploys,
                Message(text=f":unlock: <@{who.user}> unlocked {svc.name} in {env.name}"),
            )
            await audit.by(
                session,
                who,
                at=now,
                action="unlock",
                target=svc.name,
                environment=env.name,
                detail={"owner": lock.owner, "reason": lock.reason},
            )
        return f"Unlocked {svc.name} in {env.name} (was: {lock.reason})."

    # -- views ------------------------------------------------------------------------

    async def history(
        self, service: str | None, env: str | None, limit: int = 10
    ) -> list[Deployment]:
        query = select(Deployment).order_by(col(Deployment.id).desc()).limit(limit)
        if service:
            query = query.where(Deployment.service == service)
        if env:
            query = query.where(Deployment.environment == env)
        async with self.db.transaction() as session:
            return list((await session.exec(query)).all())

    async def status(self, service: str, env_name: str | None) -> list[str]:
        svc = self.deploys.service(service, "status")
        envs = (
            [self.deploys.environment(svc, env_name, "status").name]
            if env_name
            else svc.environments
        )
        lines = []
        for env in envs:
            ns = svc.namespace_for(env)
            workload = await self._workload(svc.name, env, svc.k8s_deployment)
            try:
                obj = await self.engine.cluster_for(env).get_deployment(ns, workload)
            except Exception as exc:
                lines.append(f"*{env}*: cluster unreachable ({exc})")
                continue
            async with self.db.transaction() as session:
                active = await self.deploys.active(session, svc.name, env)
                lock = await session.get(DeployLock, (svc.name, env))
            if obj is None:
                lines.append(f"*{env}*: Deployment {ns}/{workload} not found")
                continue
            st = obj.get("status", {})
            line = (
                f"*{env}*: `{image_of(obj, svc.container)}` on {workload}, "
                f"{st.get('availableReplicas', 0)}/{obj['spec'].get('replicas', 0)} available"
                f" ({rollout_status(obj).message})"
            )
            if active is not None:
                line += f"\n   in progress: #{active.id} {active.version} {active.state}"
            if lock is not None:
                line += f"\n   :lock: locked by <@{lock.owner}>: {lock.reason}"
            lines.append(line)
        return lines

    async def drift(self, service: str | None, env: str | None) -> list[Drift]:
        async with self.db.transaction() as session:
            query = select(DesiredState)
            if service:
                query = query.where(DesiredState.service == service)
            if env:
                query = query.where(DesiredState.environment == env)
            desired_rows = list((await session.exec(query)).all())
        out = []
        for desired in desired_rows:
            svc = self.config.service(desired.service)
            if svc is None:
                continue
            workload = desired.workload or svc.k8s_deployment
            obj = await self.engine.cluster_for(desired.environment).get_deployment(
                svc.namespace_for(desired.environment), workload
            )
            diffs = []
            if obj is None:
                diffs.append(f"Deployment {workload} is missing")
            else:
                running = image_of(obj, svc.container)
                if desired.image and running != desired.image:
                    diffs.append(f"image is {running}, the bot last applied {desired.image}")
                replicas = int(obj["spec"].get("replicas", 0))
                if desired.replicas is not None and replicas != desired.replicas:
                    diffs.append(
                        f"replicas are {replicas}, the bot last applied {desired.replicas}"
                    )
            out.append(Drift(desired.service, desired.environment, workload, diffs, desired))
        return out

    async def fix_drift(self, who: Actor, service: str | None, env: str | None) -> list[str]:
        fixed = []
        for drift in await self.drift(service, env):
            if not drift.differences:
                continue
            svc = self.deploys.service(drift.service, "drift.fix")
            await self.deploys.auth.require(
                who.user, drift.environment, Role.DEPLOYER, action="drift.fix", target=svc.name
            )
            cluster = self.engine.cluster_for(drift.environment)
            ns = svc.namespace_for(drift.environment)
            obj = await cluster.get_deployment(ns, drift.workload)
            if obj is None:
                fixed.append(f"{svc.name} in {drift.environment}: cannot fix a missing Deployment")
                continue
            if drift.desired.image and image_of(obj, svc.container) != drift.desired.image:
                await cluster.patch_deployment(
                    ns, drift.workload, image_patch(svc.container, obj, drift.desired.image)
                )
            if drift.desired.replicas is not None:
                await cluster.scale_deployment(ns, drift.workload, drift.desired.replicas)
            async with self.db.transaction() as session:
                await audit.by(
                    session,
                    who,
                    at=self.clock.now(),
                    action="drift.fix",
                    target=svc.name,
                    environment=drift.environment,
                    detail={"fixed": drift.differences},
                )
            fixed.append(f"{svc.name} in {drift.environment}: " + "; ".join(drift.differences))
        return fixed


def cooldown_left(last: ScaleEvent | None, cooldown: timedelta) -> float:
    return 0.0 if last is None else cooldown.total_seconds()
