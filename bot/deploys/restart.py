"""Rolling restart of a service's workload: `kubectl rollout restart`.

Done the way kubectl does it, by stamping the pod template with the
`kubectl.kubernetes.io/restartedAt` annotation, so the Deployment controller
replaces the pods under the Deployment's own rolling-update rules and the
change shows up in `kubectl rollout history` like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.core import audit
from bot.core.audit import Actor
from bot.core.chat import Message
from bot.core.config import Role
from bot.core.errors import ChatOpsError, Refused
from bot.deploys.operations import DeployOperations
from bot.deploys.preflight import check_lock

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@dataclass(frozen=True)
class Restarted:
    namespace: str
    workload: str
    environment: str
    at: str


async def restart(
    ops: DeployOperations, who: Actor, service: str, env_name: str | None
) -> Restarted:
    svc = ops.deploys.service(service, "restart")
    env = ops.deploys.environment(svc, env_name, "restart")
    await ops.deploys.auth.require(
        who.user, env.name, Role.DEPLOYER, action="restart", target=svc.name
    )
    async with ops.db.transaction() as session:
        await check_lock(session, who, svc, env.name, "restart")
        active = await ops.deploys.active(session, svc.name, env.name)
    if active is not None:
        # Restarting under a rollout would mix the two; the rollout decides.
        raise Refused(
            f"Deploy #{active.id} of {svc.name} to {env.name} is in progress; "
            "restart when it is done.",
            action="restart",
            target=svc.name,
            environment=env.name,
            reason="in_progress",
        )
    ns = svc.namespace_for(env.name)
    workload = await ops._workload(svc.name, env.name, svc.k8s_deployment)
    cluster = ops.engine.cluster_for(env.name)
    if await cluster.get_deployment(ns, workload) is None:
        raise ChatOpsError(f"Deployment {ns}/{workload} does not exist.")
    now = ops.clock.now()
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
    await cluster.patch_deployment(ns, workload, patch)
    async with ops.db.transaction() as session:
        text = f":arrows_counterclockwise: <@{who.user}> restarted {svc.name} in {env.name}"
        await ops.engine.outbox.post(session, ops.config.channels.deploys, Message(text=text))
        await audit.by(
            session,
            who,
            at=now,
            action="restart",
            target=svc.name,
            environment=env.name,
            detail={"namespace": ns, "workload": workload},
        )
    return Restarted(ns, workload, env.name, stamp)
