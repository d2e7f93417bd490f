"""Seeds the sandbox cluster from the bot's service catalogue, for `make run`
and the tests. Only the command line and the tests import this: the bot's
logic talks to whatever cluster KUBECONFIG names and cannot tell."""

from __future__ import annotations

from bot.core.config import Config
from sandbox import DeploymentConfig, ImageRule, SandboxConfig, ServiceConfig

# Tags ending like this misbehave in the sandbox, so failures can be tried:
#   checkout v2-crash never becomes ready; v2-bad serves 30% errors; v2-slow is slow.
IMAGE_RULES = [
    ImageRule(pattern="*-crash", crash=True),
    ImageRule(pattern="*-bad", error_ratio=0.3, latency_p50_seconds=0.05, latency_p99_seconds=0.3),
    ImageRule(pattern="*-slow", latency_p50_seconds=0.4, latency_p99_seconds=1.5),
    # Between a typical success (< 5%) and failure (>= 10%) threshold: inconclusive.
    ImageRule(pattern="*-meh", error_ratio=0.07),
]


def sandbox_config(config: Config, *, version: str = "v1", fast: bool = False) -> SandboxConfig:
    deployments, services, namespaces = [], [], set()
    for svc in config.services:
        for env in svc.environments:
            ns = svc.namespace_for(env)
            namespaces.add(ns)
            name = svc.k8s_deployment
            deployments.append(
                DeploymentConfig(
                    name=name,
                    namespace=ns,
                    labels={"app": name},
                    container_name=svc.container or "app",
                    image=f"{svc.image}:{version}",
                    replicas=max(svc.replicas.min, 2),
                    progress_deadline_seconds=10 if fast else 45,
                )
            )
            services.append(ServiceConfig(name=name, namespace=ns, selector={"app": name}))
    timing: dict[str, float] = (
        {
            "pod_ready_seconds": 0.05,
            "crash_restart_seconds": 0.2,
            "tick_seconds": 0.02,
            "scrape_interval_seconds": 0.1,
        }
        if fast
        else {
            "pod_ready_seconds": 1.0,
            "crash_restart_seconds": 3.0,
            "tick_seconds": 0.1,
            "scrape_interval_seconds": 1.0,
        }
    )
    return SandboxConfig.model_validate(
        {
            "namespaces": sorted(namespaces) or ["default"],
            "deployments": deployments,
            "services": services,
            "images": IMAGE_RULES,
            **timing,
        }
    )
