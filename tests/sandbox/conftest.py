"""Fixtures: a fast sandbox per test, a kubeconfig for it, and kubectl."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from sandbox import (
    DeploymentConfig,
    ImageRule,
    RunningSandbox,
    SandboxConfig,
    ServiceConfig,
    start_sandbox,
)

KUBECTL = "/usr/bin/kubectl"


def fast_config(**overrides: object) -> SandboxConfig:
    """Sub-second timings so rollouts finish in a few hundred milliseconds."""
    base: dict[str, object] = {
        "namespaces": ["default"],
        "deployments": [DeploymentConfig(name="web", image="registry.local/web:1.0.0",
                                         replicas=3, progress_deadline_seconds=30)],
        "services": [ServiceConfig(name="web", selector={"app": "web"})],
        "images": [ImageRule(pattern="*-crash", crash=True),
                   ImageRule(pattern="*-bad", error_ratio=0.25, latency_p50_seconds=0.3,
                             latency_p99_seconds=0.9)],
        "pod_ready_seconds": 0.05,
        "crash_restart_seconds": 0.2,
        "tick_seconds": 0.02,
        "scrape_interval_seconds": 0.05,
    }
    base.update(overrides)
    return SandboxConfig.model_validate(base)


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return fast_config()


@pytest.fixture
async def sandbox(sandbox_config: SandboxConfig) -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(sandbox_config, seed=7)
    try:
        await running.wait_until(lambda: _rolled_out(running))
        yield running
    finally:
        await running.stop()


def _rolled_out(running: RunningSandbox) -> bool:
    from sandbox.resources import DEPLOYMENTS

    for d in running.store.list(DEPLOYMENTS):
        status = d.get("status") or {}
        if status.get("availableReplicas", 0) != d["spec"]["replicas"]:
            return False
    return True


@pytest.fixture
def kubeconfig(sandbox: RunningSandbox, tmp_path: Path) -> Path:
    return sandbox.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def api_client(kubeconfig: Path) -> client.ApiClient:
    return new_client(kubeconfig)


def new_client(kubeconfig: Path) -> client.ApiClient:
    made: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig))
    return made


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking client call in a worker thread; results are loosely typed models."""
    return await asyncio.to_thread(fn, *args, **kwargs)


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Kubectl:
    kubeconfig: Path
    home: Path

    async def __call__(self, *args: str, timeout: float = 30.0) -> Result:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home)}
        proc = await asyncio.create_subprocess_exec(
            KUBECTL, "--kubeconfig", str(self.kubeconfig),
            "--cache-dir", str(self.home / "cache"), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(), err.decode())


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    if not Path(KUBECTL).exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("kubectl is required under CI=true (scripts/test-services.sh installs it)")
        pytest.skip("kubectl is not installed")
    home = tmp_path / "home"
    home.mkdir()
    return Kubectl(kubeconfig, home)
