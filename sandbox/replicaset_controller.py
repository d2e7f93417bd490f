"""ReplicaSet controller: keeps each ReplicaSet's pod count at spec.replicas.

Also the garbage collector's job for this sandbox: objects whose controlling
owner is gone are deleted (background propagation, kubectl's default).
"""

from __future__ import annotations

import copy
from typing import Any

from sandbox import manifests, timeutil
from sandbox.pods import Kubelet, is_ready
from sandbox.resources import DEPLOYMENTS, PODS, REPLICASETS, ResourceType
from sandbox.store import Store

Obj = dict[str, Any]


class ReplicaSetController:
    def __init__(self, store: Store, kubelet: Kubelet) -> None:
        self._store = store
        self._kubelet = kubelet

    def collect_garbage(self) -> None:
        for owned, owner in ((REPLICASETS, DEPLOYMENTS), (PODS, REPLICASETS)):
            alive = {o["metadata"]["uid"] for o in self._store.list(owner)}
            for obj in self._store.list(owned):
                uid = manifests.controller_uid(obj)
                if uid is not None and uid not in alive:
                    self._delete(owned, obj)

    def _delete(self, rt: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        if self._store.find(rt, meta.get("namespace"), meta["name"]) is not None:
            self._store.delete(rt, meta.get("namespace"), meta["name"])
        if rt is PODS:
            self._kubelet.forget(meta["uid"])

    def pods_of(self, rs: Obj, pods: list[Obj]) -> list[Obj]:
        uid = rs["metadata"]["uid"]
        return [p for p in pods if manifests.controller_uid(p) == uid]

    def sync_all(self) -> None:
        pods = self._store.list(PODS)
        for rs in self._store.list(REPLICASETS):
            self._sync(rs, self.pods_of(rs, pods))

    def _sync(self, rs: Obj, pods: list[Obj]) -> None:
        want = int(rs["spec"].get("replicas", 1))
        if len(pods) < want:
            pods += [self._kubelet.create_pod(rs) for _ in range(want - len(pods))]
        elif len(pods) > want:
            # Delete the least useful pods first: not ready before ready, newest first.
            ranked = sorted(pods, key=lambda p: (is_ready(p), -self._age_key(p)))
            for victim in ranked[: len(pods) - want]:
                self._delete(PODS, victim)
            doomed = {p["metadata"]["uid"] for p in ranked[: len(pods) - want]}
            pods = [p for p in pods if p["metadata"]["uid"] not in doomed]
        self._write_status(rs, pods)

    def _age_key(self, pod: Obj) -> float:
        return timeutil.parse_rfc3339(pod["metadata"]["creationTimestamp"])

    def available(self, rs: Obj, pod: Obj, now: float) -> bool:
        since = self._kubelet.ready_since(pod)
        min_ready = int(rs["spec"].get("minReadySeconds") or 0)
        return is_ready(pod) and since is not None and now - since >= min_ready

    def _write_status(self, rs: Obj, pods: list[Obj]) -> None:
        now = timeutil.now()
        ready = sum(1 for p in pods if is_ready(p))
        available = sum(1 for p in pods if self.available(rs, p, now))
        status: Obj = {"replicas": len(pods),
                       "observedGeneration": rs["metadata"].get("generation", 1)}
        # Zero counts are omitted, as the real API's omitempty fields are.
        for key, value in (("fullyLabeledReplicas", len(pods)), ("readyReplicas", ready),
                           ("availableReplicas", available)):
            if value:
                status[key] = value
        if rs.get("status") != status:
            updated = copy.deepcopy(rs)
            updated["status"] = status
            self._store.replace(REPLICASETS, updated)
