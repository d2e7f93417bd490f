"""The control loop: kubelet, ReplicaSet and Deployment controllers on one tick.

Runs every ``tick_seconds`` and right away when a client writes (``kick``), so
a ``kubectl set image`` starts rolling without waiting a whole tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from sandbox.config import SandboxConfig
from sandbox.deployment_controller import DeploymentController
from sandbox.pods import Kubelet
from sandbox.replicaset_controller import ReplicaSetController
from sandbox.store import Store

log = logging.getLogger(__name__)


class ControlLoop:
    def __init__(self, store: Store, config: SandboxConfig, seed: int | None = None) -> None:
        self.kubelet = Kubelet(store, config, random.Random(seed))
        self.replicasets = ReplicaSetController(store, self.kubelet)
        self.deployments = DeploymentController(store)
        self._config = config
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._after_tick: list[Callable[[], None]] = []

    def on_tick(self, callback: Callable[[], None]) -> None:
        self._after_tick.append(callback)

    def kick(self) -> None:
        self._wake.set()

    def tick(self) -> None:
        """One full pass; synchronous, so no client sees a half-done state."""
        self.replicasets.collect_garbage()
        self.deployments.forget_missing()
        self.kubelet.step()
        self.replicasets.sync_all()
        self.deployments.reconcile_all()
        self.replicasets.sync_all()
        self.deployments.write_status_all()
        for callback in self._after_tick:
            callback()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sandbox-control-loop")

    async def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:
                # A bug in one pass must not stop the cluster from converging later.
                log.exception("sandbox control loop tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._config.tick_seconds)
            self._wake.clear()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
