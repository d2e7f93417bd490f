"""Deployment controller semantics, driven tick by tick without HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from sandbox import DeploymentConfig, SandboxConfig
from sandbox.controller import ControlLoop
from sandbox.pods import is_ready
from sandbox.resources import (
    DEPLOYMENTS,
    PODS,
    REPLICASETS,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
)
from sandbox.server import _seed
from sandbox.store import Obj, Store


class Cluster:
    def __init__(self, **deployment: object) -> None:
        self.config = SandboxConfig(
            deployments=[DeploymentConfig.model_validate(
                {"name": "web", "image": "web:1", **deployment})],
            pod_ready_seconds=0.01, tick_seconds=0.01)
        self.store = Store()
        _seed(self.store, self.config)
        self.loop = ControlLoop(self.store, self.config, seed=1)

    def deployment(self) -> Obj:
        return self.store.get(DEPLOYMENTS, "default", "web")

    def set_image(self, image: str) -> None:
        d = self.deployment()
        d["spec"]["template"]["spec"]["containers"][0]["image"] = image
        self.store.replace(DEPLOYMENTS, d)

    def run_until(self, done: Callable[[], bool], each: Callable[[], None] = lambda: None,
                  timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.loop.tick()
            each()
            if done():
                return
            assert time.monotonic() < deadline, self.deployment()["status"]
            time.sleep(0.005)

    def complete(self) -> bool:
        d = self.deployment()
        status = d.get("status") or {}
        want = d["spec"]["replicas"]
        return bool(status.get("observedGeneration") == d["metadata"]["generation"]
                    and status.get("updatedReplicas", 0) == want == status.get("replicas", 0)
                    and status.get("availableReplicas", 0) == want)

    def pods(self) -> list[Obj]:
        return self.store.list(PODS)

    def sets(self) -> list[Obj]:
        return self.store.list(REPLICASETS)


@pytest.mark.parametrize(("surge", "unavailable", "max_pods", "min_ready"), [
    (1, 0, 5, 4), ("0%", "50%", 4, 2), ("25%", "25%", 5, 3),
])
def test_rolling_update_respects_its_budgets(surge: object, unavailable: object,
                                             max_pods: int, min_ready: int) -> None:
    cluster = Cluster(replicas=4, max_surge=surge, max_unavailable=unavailable)
    cluster.run_until(cluster.complete)
    cluster.set_image("web:2")
    counts: list[tuple[int, int]] = []

    def observe() -> None:
        pods = cluster.pods()
        counts.append((len(pods), sum(1 for p in pods if is_ready(p))))

    cluster.run_until(cluster.complete, observe)
    assert max(total for total, _ in counts) <= max_pods
    assert min(ready for _, ready in counts) >= min_ready
    assert {p["spec"]["containers"][0]["image"] for p in cluster.pods()} == {"web:2"}
    assert cluster.deployment()["metadata"]["annotations"][REVISION_ANNOTATION] == "2"


def test_revision_history_limit_prunes_old_sets() -> None:
    cluster = Cluster(replicas=1, revision_history_limit=2)
    cluster.run_until(cluster.complete)
    for version in range(2, 7):
        cluster.set_image(f"web:{version}")
        cluster.run_until(cluster.complete)
    cluster.loop.tick()  # pruning happens on the sync after the rollout completes
    revisions = sorted(int(rs["metadata"]["annotations"][REVISION_ANNOTATION])
                       for rs in cluster.sets())
    assert revisions == [4, 5, 6]


def test_rollback_reuses_the_old_replica_set_with_a_new_revision() -> None:
    cluster = Cluster(replicas=2)
    cluster.run_until(cluster.complete)
    first = cluster.sets()[0]["metadata"]["name"]
    cluster.set_image("web:2")
    cluster.run_until(cluster.complete)
    cluster.set_image("web:1")
    cluster.run_until(cluster.complete)
    assert len(cluster.sets()) == 2
    reused = cluster.store.get(REPLICASETS, "default", first)
    annotations = reused["metadata"]["annotations"]
    assert annotations[REVISION_ANNOTATION] == "3"
    assert annotations[REVISION_HISTORY_ANNOTATION] == "1"
    assert reused["spec"]["replicas"] == 2


def test_recreate_never_runs_old_and_new_together() -> None:
    cluster = Cluster(replicas=3, strategy="Recreate")
    cluster.run_until(cluster.complete)
    cluster.set_image("web:2")
    mixes: list[set[str]] = []
    cluster.run_until(cluster.complete, lambda: mixes.append(
        {p["spec"]["containers"][0]["image"] for p in cluster.pods()}))
    assert {"web:1", "web:2"} not in mixes


def test_paused_deployment_waits_until_resumed() -> None:
    cluster = Cluster(replicas=2)
    cluster.run_until(cluster.complete)
    d = cluster.deployment()
    d["spec"]["paused"] = True
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "web:2"
    cluster.store.replace(DEPLOYMENTS, d)
    for _ in range(5):
        cluster.loop.tick()
    assert len(cluster.sets()) == 1
    progressing = next(c for c in cluster.deployment()["status"]["conditions"]
                       if c["type"] == "Progressing")
    assert progressing["reason"] == "DeploymentPaused"
    d = cluster.deployment()
    d["spec"]["paused"] = False
    cluster.store.replace(DEPLOYMENTS, d)
    cluster.run_until(cluster.complete)
    assert {p["spec"]["containers"][0]["image"] for p in cluster.pods()} == {"web:2"}


def test_deleting_a_deployment_collects_its_sets_and_pods() -> None:
    cluster = Cluster(replicas=2)
    cluster.run_until(cluster.complete)
    cluster.store.delete(DEPLOYMENTS, "default", "web")
    cluster.loop.tick()
    cluster.loop.tick()
    assert cluster.sets() == [] and cluster.pods() == []


def test_scaling_without_template_change_keeps_the_revision() -> None:
    cluster = Cluster(replicas=2)
    cluster.run_until(cluster.complete)
    d = cluster.deployment()
    d["spec"]["replicas"] = 5
    cluster.store.replace(DEPLOYMENTS, d)
    cluster.run_until(cluster.complete)
    assert len(cluster.sets()) == 1 and len(cluster.pods()) == 5
    assert cluster.deployment()["metadata"]["annotations"][REVISION_ANNOTATION] == "1"
    assert cluster.sets()[0]["metadata"]["annotations"][
        "deployment.kubernetes.io/desired-replicas"] == "5"


def test_zero_counts_are_omitted_like_omitempty() -> None:
    cluster = Cluster(replicas=0)
    cluster.run_until(lambda: "observedGeneration" in (cluster.deployment().get("status") or {}))
    status = cluster.deployment()["status"]
    assert "readyReplicas" not in status and "availableReplicas" not in status
