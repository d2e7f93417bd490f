"""What the deploy domain needs from outside systems, as Protocols. The real
implementations live in integrations/ (kubernetes.py, github.py,
prometheus.py) and match these structurally; the domain never imports them.

Kubernetes objects cross this boundary as the API's own JSON (camelCase
dicts): the Kubernetes API is the protocol, and the rollout logic reads it
as kubectl does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

KubeObject = dict[str, Any]
PatchType = Literal["strategic", "merge", "json"]


class Cluster(Protocol):
    async def get_deployment(self, namespace: str, name: str) -> KubeObject | None: ...

    async def create_deployment(self, namespace: str, body: KubeObject) -> KubeObject: ...

    async def patch_deployment(
        self, namespace: str, name: str, patch: Any, patch_type: PatchType = "strategic"
    ) -> KubeObject: ...

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> KubeObject: ...

    async def list_replicasets(self, namespace: str, label_selector: str) -> list[KubeObject]: ...

    async def get_service(self, namespace: str, name: str) -> KubeObject | None: ...

    async def create_service(self, namespace: str, body: KubeObject) -> KubeObject: ...

    async def patch_service(
        self, namespace: str, name: str, patch: Any, patch_type: PatchType = "merge"
    ) -> KubeObject: ...

    async def list_pods(self, namespace: str, label_selector: str) -> list[KubeObject]: ...


class ClusterProvider(Protocol):
    """One Cluster per kube context (environments may live in different clusters)."""

    def for_context(self, context: str | None) -> Cluster: ...


class Commit(Protocol):
    # Read-only properties, so frozen dataclasses satisfy the protocol.
    @property
    def sha(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def author(self) -> str: ...
    @property
    def date(self) -> datetime | None: ...


class Checks(Protocol):
    @property
    def state(self) -> Literal["success", "failure", "pending", "none"]: ...
    @property
    def failing(self) -> Sequence[str]: ...
    @property
    def pending(self) -> Sequence[str]: ...


class SourceControl(Protocol):
    async def resolve(self, repo: str, ref: str) -> Commit | None: ...

    async def checks(self, repo: str, sha: str) -> Checks: ...

    async def compare(
        self, repo: str, base: str, head: str, limit: int
    ) -> tuple[Sequence[Commit], int]: ...

    async def create_deployment(
        self,
        repo: str,
        *,
        ref: str,
        environment: str,
        description: str,
        payload: dict[str, Any],
        production: bool,
        transient: bool = False,
    ) -> int: ...

    async def set_deployment_status(
        self,
        repo: str,
        deployment_id: int,
        state: str,
        *,
        description: str = "",
        log_url: str | None = None,
        environment_url: str | None = None,
    ) -> None: ...


class MetricsSource(Protocol):
    async def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: one (labels, value) per series; a scalar is ({}, value)."""
        ...
