"""Rolling, canary and blue-green on plain Kubernetes (no CRDs, no mesh).

Each strategy is a set of steps the engine calls, one per tick; every step
is idempotent (it sets the cluster to a state rather than changing it by a
delta), so a tick repeated after a crash does no harm. Progress between
ticks lives in `Deployment.progress`.

- rolling: patch the primary's image, follow kubectl's rollout status.
- canary: a `<name>-canary` Deployment whose pods carry the primary's labels
  plus `track: canary`, so the Service sends them a share of traffic; sized
  to each step's weight; promotion updates the primary and scales the canary
  to 0; an abort scales the canary to 0 (the primary never changed).
- blue-green: slot Deployments `<name>-blue`/`<name>-green` whose pods differ
  from the active ones in the Service-selector labels (`app: x-green`), so
  they get no traffic until the Service's selector is switched to them; a
  `<service>-preview` Service sends test traffic to the new slot for analysis.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.core.chat import Message
from bot.core.config import Service
from bot.deploys.models import Deployment, DeployState
from bot.deploys.ports import Cluster, KubeObject
from bot.deploys.rollout import image_of, rollout_status

CANARY_LABEL = "track"
SLOT_SUFFIX = re.compile(r"-(blue|green)$")


@dataclass
class Step:
    """What a step decided: the next state (None = stay), why, when to tick
    again, and anything worth saying in the deploy's thread."""

    state: DeployState | None = None
    reason: str = ""
    wait: float = 2.0
    notes: list[str | Message] = field(default_factory=list)


@dataclass
class DeployContext:
    deployment: Deployment
    service: Service
    cluster: Cluster
    namespace: str
    elapsed: float  # seconds since the rollout started

    @property
    def progress(self) -> dict[str, Any]:
        return self.deployment.progress

    @property
    def name(self) -> str:
        return self.service.k8s_deployment

    @property
    def container(self) -> str | None:
        return self.service.container


def image_patch(container: str | None, template: KubeObject | None, image: str) -> KubeObject:
    """A strategic-merge patch setting one container's image (by name)."""
    name = container
    if name is None and template is not None:
        name = template["spec"]["template"]["spec"]["containers"][0]["name"]
    return {"spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}}


async def _require(cluster: Cluster, namespace: str, name: str) -> KubeObject:
    obj = await cluster.get_deployment(namespace, name)
    if obj is None:
        raise LookupError(f"Deployment {namespace}/{name} does not exist")
    return obj


async def set_image(ctx: DeployContext, name: str, image: str) -> None:
    current = await _require(ctx.cluster, ctx.namespace, name)
    if image_of(current, ctx.container) != image:
        await ctx.cluster.patch_deployment(
            ctx.namespace, name, image_patch(ctx.container, current, image)
        )


async def wait_rollout(ctx: DeployContext, name: str, timeout: float) -> Step | None:
    """None when the rollout is done; a Step to wait or to fail otherwise."""
    status = rollout_status(await _require(ctx.cluster, ctx.namespace, name))
    if status.failed:
        return Step(DeployState.ROLLING_BACK, status.message, wait=0)
    if status.done:
        return None
    if ctx.elapsed > timeout:
        return Step(
            DeployState.ROLLING_BACK,
            f"rollout of {name} did not finish within {int(timeout)}s: {status.message}",
            wait=0,
        )
    return Step(wait=1.0)


def _copy_for(
    source: KubeObject,
    name: str,
    labels: dict[str, str],
    image: str,
    container: str | None,
    replicas: int,
) -> KubeObject:
    """A new Deployment from `source`'s spec: pod labels, selector and image replaced."""
    spec = copy.deepcopy(source["spec"])
    spec["replicas"] = replicas
    spec["selector"] = {"matchLabels": dict(labels)}
    spec["template"].setdefault("metadata", {})["labels"] = dict(labels)
    for c in spec["template"]["spec"]["containers"]:
        if container is None or c["name"] == container:
            c["image"] = image
            break
    meta = source.get("metadata", {})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace"),
            "labels": {**meta.get("labels", {}), "app.kubernetes.io/managed-by": "chatops-bot"},
        },
        "spec": spec,
    }


async def ensure_copy(
    ctx: DeployContext,
    source: KubeObject,
    name: str,
    labels: dict[str, str],
    image: str,
    replicas: int,
) -> None:
    existing = await ctx.cluster.get_deployment(ctx.namespace, name)
    if existing is None:
        await ctx.cluster.create_deployment(
            ctx.namespace, _copy_for(source, name, labels, image, ctx.container, replicas)
        )
        return
    patch = image_patch(ctx.container, existing, image)
    patch["spec"]["replicas"] = replicas
    await ctx.cluster.patch_deployment(ctx.namespace, name, patch)


class Rolling:
    async def start(self, ctx: DeployContext) -> Step:
        await set_image(ctx, ctx.name, ctx.deployment.image)
        return Step(DeployState.ROLLING_OUT, f"image set to {ctx.deployment.image}", wait=1.0)

    async def progress(self, ctx: DeployContext) -> Step:
        waiting = await wait_rollout(
            ctx, ctx.name, ctx.service.deploy.rollout_timeout.total_seconds()
        )
        if waiting is not None:
            return waiting
        return Step(DeployState.HEALTH_GATING, "rollout finished", wait=0)

    async def next_after_analysis(self, ctx: DeployContext) -> Step:
        return Step(DeployState.PROMOTING, "health gate passed", wait=0)

    async def promote(self, ctx: DeployContext) -> Step:
        return Step(DeployState.COMPLETED, "all replicas run the new version", wait=0)

    async def roll_back(self, ctx: DeployContext) -> Step:
        previous = ctx.deployment.previous_image
        if previous:
            await set_image(ctx, ctx.name, previous)
        waiting = await wait_rollout(
            ctx, ctx.name, ctx.service.deploy.rollout_timeout.total_seconds() * 2
        )
        if waiting is None:
            return Step(DeployState.ROLLED_BACK, f"back on {previous}", wait=0)
        if waiting.state == DeployState.ROLLING_BACK:
            return Step(DeployState.FAILED, f"rollback did not converge: {waiting.reason}", wait=0)
        return waiting


class Canary:
    def _steps(self, ctx: DeployContext) -> int:
        return len(ctx.service.deploy.canary_steps)

    def canary_name(self, ctx: DeployContext) -> str:
        return f"{ctx.name}-canary"

    async def _size_canary(self, ctx: DeployContext) -> int:
        primary = await _require(ctx.cluster, ctx.namespace, ctx.name)
        step = ctx.service.deploy.canary_steps[int(ctx.progress.get("step", 0))]
        total = int(primary["spec"].get("replicas", 1))
        size = max(1, math.ceil(total * step.weight / 100))
        labels = {**primary["spec"]["selector"].get("matchLabels", {}), CANARY_LABEL: "canary"}
        await ensure_copy(ctx, primary, self.canary_name(ctx), labels, ctx.deployment.image, size)
        ctx.progress.update(canary_replicas=size, weight=step.weight, primary_replicas=total)
        return size

    async def start(self, ctx: DeployContext) -> Step:
        ctx.progress.setdefault("step", 0)
        size = await self._size_canary(ctx)
        return Step(
            DeployState.ROLLING_OUT,
            f"step 1/{self._steps(ctx)}: canary at {ctx.progress['weight']}% ({size} pod(s))",
            wait=1.0,
        )

    async def progress(self, ctx: DeployContext) -> Step:
        waiting = await wait_rollout(
            ctx, self.canary_name(ctx), ctx.service.deploy.rollout_timeout.total_seconds()
        )
        if waiting is not None:
            return waiting
        return Step(
            DeployState.HEALTH_GATING, f"canary ready at {ctx.progress.get('weight')}%", wait=0
        )

    async def next_after_analysis(self, ctx: DeployContext) -> Step:
        step = int(ctx.progress.get("step", 0)) + 1
        if step >= self._steps(ctx):
            return Step(DeployState.PROMOTING, "every canary step passed", wait=0)
        ctx.progress["step"] = step
        size = await self._size_canary(ctx)
        return Step(
            DeployState.ROLLING_OUT,
            f"step {step + 1}/{self._steps(ctx)}: canary at {ctx.progress['weight']}% "
            f"({size} pod(s))",
            wait=1.0,
        )

    async def promote(self, ctx: DeployContext) -> Step:
        await set_image(ctx, ctx.name, ctx.deployment.image)
        waiting = await wait_rollout(
            ctx, ctx.name, ctx.service.deploy.rollout_timeout.total_seconds()
        )
        if waiting is not None:
            return waiting
        await ctx.cluster.scale_deployment(ctx.namespace, self.canary_name(ctx), 0)
        return Step(DeployState.COMPLETED, "primary updated, canary scaled to 0", wait=0)

    async def roll_back(self, ctx: DeployContext) -> Step:
        if await ctx.cluster.get_deployment(ctx.namespace, self.canary_name(ctx)) is not None:
            await ctx.cluster.scale_deployment(ctx.namespace, self.canary_name(ctx), 0)
        previous = ctx.deployment.previous_image
        primary = await _require(ctx.cluster, ctx.namespace, ctx.name)
        if previous and image_of(primary, ctx.container) != previous:
            # Only when promotion had started: otherwise the primary never changed.
            await set_image(ctx, ctx.name, previous)
        waiting = await wait_rollout(
            ctx, ctx.name, ctx.service.deploy.rollout_timeout.total_seconds() * 2
        )
        if waiting is None:
            return Step(
                DeployState.ROLLED_BACK,
                "canary scaled to 0; primary unchanged"
                if not ctx.progress.get("promoting")
                else f"back on {previous}",
                wait=0,
            )
        if waiting.state == DeployState.ROLLING_BACK:
            return Step(DeployState.FAILED, f"rollback did not converge: {waiting.reason}", wait=0)
        return waiting


class BlueGreen:
    """Progress keeps `active` and `target`: {"deployment": name, "selector": {...}}."""

    def service_name(self, ctx: DeployContext) -> str:
        return ctx.name

    async def _plan(self, ctx: DeployContext) -> None:
        if "target" in ctx.progress:
            return
        svc = await ctx.cluster.get_service(ctx.namespace, self.service_name(ctx))
        if svc is None:
            raise LookupError(f"Service {ctx.namespace}/{self.service_name(ctx)} does not exist")
        selector: dict[str, str] = dict(svc["spec"].get("selector") or {})
        base = {k: SLOT_SUFFIX.sub("", v) for k, v in selector.items()}
        active_slot = next(
            (m.group(1) for v in selector.values() if (m := SLOT_SUFFIX.search(v))), None
        )
        slot = "blue" if active_slot == "green" else "green"
        active_name = f"{ctx.name}-{active_slot}" if active_slot else ctx.name
        ctx.progress.update(
            active={"deployment": active_name, "selector": selector},
            target={
                "deployment": f"{ctx.name}-{slot}",
                "selector": {k: f"{v}-{slot}" for k, v in base.items()},
            },
            slot=slot,
        )

    async def start(self, ctx: DeployContext) -> Step:
        await self._plan(ctx)
        active = await _require(ctx.cluster, ctx.namespace, ctx.progress["active"]["deployment"])
        target = ctx.progress["target"]
        labels = {
            **(active["spec"]["template"].get("metadata", {}).get("labels") or {}),
            **target["selector"],
        }
        replicas = int(active["spec"].get("replicas", 1))
        await ensure_copy(ctx, active, target["deployment"], labels, ctx.deployment.image, replicas)
        return Step(
            DeployState.ROLLING_OUT,
            f"{target['deployment']} starting {replicas} pod(s) of the new version "
            "(no traffic yet)",
            wait=1.0,
        )

    async def progress(self, ctx: DeployContext) -> Step:
        target = ctx.progress["target"]
        waiting = await wait_rollout(
            ctx, target["deployment"], ctx.service.deploy.rollout_timeout.total_seconds()
        )
        if waiting is not None:
            return waiting
        await self._point_preview(ctx, target["selector"])
        return Step(
            DeployState.HEALTH_GATING,
            f"{target['deployment']} healthy; preview traffic for analysis",
            wait=0,
        )

    async def _point_preview(self, ctx: DeployContext, selector: dict[str, str]) -> None:
        """A `<service>-preview` Service lets analysis see the new slot serve."""
        name = f"{self.service_name(ctx)}-preview"
        if await ctx.cluster.get_service(ctx.namespace, name) is not None:
            await ctx.cluster.patch_service(ctx.namespace, name, {"spec": {"selector": selector}})
            return
        main = await ctx.cluster.get_service(ctx.namespace, self.service_name(ctx))
        ports = (main or {}).get("spec", {}).get("ports") or [{"port": 80}]
        await ctx.cluster.create_service(
            ctx.namespace,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": name,
                    "labels": {"app.kubernetes.io/managed-by": "chatops-bot"},
                },
                "spec": {"selector": selector, "ports": ports},
            },
        )

    async def next_after_analysis(self, ctx: DeployContext) -> Step:
        return Step(DeployState.PROMOTING, "new slot passed analysis", wait=0)

    async def promote(self, ctx: DeployContext) -> Step:
        target = ctx.progress["target"]
        await ctx.cluster.patch_service(
            ctx.namespace, self.service_name(ctx), {"spec": {"selector": target["selector"]}}
        )
        return Step(
            DeployState.COMPLETED,
            f"Service {self.service_name(ctx)} now selects {target['deployment']}; "
            f"{ctx.progress['active']['deployment']} kept warm for "
            f"{int(ctx.service.deploy.keep_previous.total_seconds() // 60)}m",
            wait=0,
        )

    async def roll_back(self, ctx: DeployContext) -> Step:
        """Before the switch: drop the new slot. After it: switch back at once."""
        active, target = ctx.progress.get("active"), ctx.progress.get("target")
        if active is None or target is None:
            return Step(DeployState.ROLLED_BACK, "nothing had been changed", wait=0)
        await ctx.cluster.patch_service(
            ctx.namespace, self.service_name(ctx), {"spec": {"selector": active["selector"]}}
        )
        if await ctx.cluster.get_deployment(ctx.namespace, target["deployment"]) is not None:
            await ctx.cluster.scale_deployment(ctx.namespace, target["deployment"], 0)
        return Step(
            DeployState.ROLLED_BACK,
            f"Service {self.service_name(ctx)} selects {active['deployment']} again",
            wait=0,
        )


class Strategy(Protocol):
    async def start(self, ctx: DeployContext) -> Step: ...
    async def progress(self, ctx: DeployContext) -> Step: ...
    async def next_after_analysis(self, ctx: DeployContext) -> Step: ...
    async def promote(self, ctx: DeployContext) -> Step: ...
    async def roll_back(self, ctx: DeployContext) -> Step: ...


STRATEGIES: dict[str, Strategy] = {
    "rolling": Rolling(),
    "canary": Canary(),
    "bluegreen": BlueGreen(),
}
