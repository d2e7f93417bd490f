"""Deployment controller: ReplicaSets per pod template, rolling and recreate.

Follows the upstream controller's documented behaviour (revisions, surge and
unavailability budgets, progress conditions) in a simplified, single-threaded
form. Status is written in a separate pass (``write_status``) after the
ReplicaSet controller has reacted, so no half-synced status is ever visible.
"""

from __future__ import annotations

import copy
from typing import Any

from sandbox import manifests, timeutil
from sandbox.resources import (
    DEPLOYMENTS,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    POD_TEMPLATE_HASH,
    REPLICASETS,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
)
from sandbox.rollout_status import compute_status
from sandbox.store import Store
from sandbox.strategy import surge_and_unavailable

Obj = dict[str, Any]
# Deployment annotations the controller never copies onto its ReplicaSets.
_NOT_COPIED = {REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION, DESIRED_REPLICAS_ANNOTATION,
               MAX_REPLICAS_ANNOTATION, "kubectl.kubernetes.io/last-applied-configuration"}


def revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


class DeploymentController:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._last_progress: dict[str, float] = {}

    def owned_sets(self, d: Obj) -> list[Obj]:
        uid = d["metadata"]["uid"]
        return [rs for rs in self._store.list(REPLICASETS, d["metadata"]["namespace"])
                if manifests.controller_uid(rs) == uid]

    @staticmethod
    def split(d: Obj, sets: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        wanted = manifests.strip_hash(d["spec"]["template"])
        # Upstream picks the oldest matching set if several share a template.
        matching = sorted((rs for rs in sets
                           if manifests.strip_hash(rs["spec"]["template"]) == wanted),
                          key=lambda rs: rs["metadata"]["creationTimestamp"])
        new = matching[0] if matching else None
        return new, [rs for rs in sets if new is None or rs["metadata"]["uid"] !=
                     new["metadata"]["uid"]]

    def reconcile_all(self) -> None:
        for d in self._store.list(DEPLOYMENTS):
            self.reconcile(d)

    def reconcile(self, d: Obj) -> None:
        sets = self.owned_sets(d)
        new, old = self.split(d, sets)
        if d["spec"].get("paused"):
            if new is not None:
                self._scale(d, new, int(d["spec"]["replicas"]))
            return
        recreate = d["spec"]["strategy"].get("type") == "Recreate"
        if recreate:
            active = [rs for rs in old if rs["spec"].get("replicas", 0) > 0]
            for rs in active:
                self._scale(d, rs, 0)
            if active or any(rs.get("status", {}).get("replicas", 0) for rs in old):
                return  # Recreate waits until every old pod is gone.
        new = self._create_new(d, old) if new is None else self._sync_revision(d, new, old)
        if recreate:
            self._scale(d, new, int(d["spec"]["replicas"]))
        else:
            new = self._roll_new(d, new, old)
            self._roll_old(d, new, old)
        self._cleanup(d, old)

    def _create_new(self, d: Obj, old: list[Obj]) -> Obj:
        template = copy.deepcopy(d["spec"]["template"])
        collisions = int(d.get("status", {}).get("collisionCount", 0))
        while True:
            suffix = manifests.template_hash(manifests.strip_hash(template), collisions)
            name = f"{d['metadata']['name']}-{suffix}"
            if self._store.find(REPLICASETS, d["metadata"]["namespace"], name) is None:
                break
            collisions += 1
        template.setdefault("metadata", {}).setdefault("labels", {})[POD_TEMPLATE_HASH] = suffix
        selector = copy.deepcopy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH] = suffix
        rev = max((revision(rs) for rs in old), default=0) + 1
        rs: Obj = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": name, "namespace": d["metadata"]["namespace"],
                "labels": dict(template["metadata"]["labels"]),
                "annotations": self._annotations(d, rev, None),
                "ownerReferences": [manifests.owner_reference(d)],
            },
            "spec": {"replicas": 0, "minReadySeconds": d["spec"].get("minReadySeconds", 0),
                     "selector": selector, "template": template},
        }
        created = self._store.create(REPLICASETS, rs)
        self._set_deployment_meta(d, str(rev), collisions)
        self._progress(d, "True", "NewReplicaSetCreated", f'Created new replica set "{name}"')
        return created

    def _annotations(self, d: Obj, rev: int, current: dict[str, str] | None) -> dict[str, str]:
        annotations = dict(current or {})
        for key, value in (d["metadata"].get("annotations") or {}).items():
            if key not in _NOT_COPIED:
                annotations[key] = value
        old_rev = annotations.get(REVISION_ANNOTATION)
        if old_rev is not None and old_rev != str(rev):
            history = annotations.get(REVISION_HISTORY_ANNOTATION)
            annotations[REVISION_HISTORY_ANNOTATION] = f"{history},{old_rev}" if history \
                else old_rev
        annotations[REVISION_ANNOTATION] = str(rev)
        surge, _ = surge_and_unavailable(d)
        annotations[DESIRED_REPLICAS_ANNOTATION] = str(d["spec"]["replicas"])
        annotations[MAX_REPLICAS_ANNOTATION] = str(int(d["spec"]["replicas"]) + surge)
        return annotations

    def _sync_revision(self, d: Obj, new: Obj, old: list[Obj]) -> Obj:
        """A template that returns to an old ReplicaSet makes it the newest revision."""
        max_old = max((revision(rs) for rs in old), default=0)
        rev = revision(new) if revision(new) > max_old else max_old + 1
        annotations = self._annotations(d, rev, new["metadata"].get("annotations"))
        if annotations != new["metadata"].get("annotations"):
            new = copy.deepcopy(new)
            new["metadata"]["annotations"] = annotations
            new = self._store.replace(REPLICASETS, new)
        self._set_deployment_meta(d, str(rev), None)
        return new

    def _set_deployment_meta(self, d: Obj, rev: str, collisions: int | None) -> None:
        current = self._store.find(DEPLOYMENTS, d["metadata"]["namespace"], d["metadata"]["name"])
        if current is None:
            return
        annotations = current["metadata"].setdefault("annotations", {})
        changed = annotations.get(REVISION_ANNOTATION) != rev
        annotations[REVISION_ANNOTATION] = rev
        if collisions:
            status = current.setdefault("status", {})
            changed = changed or status.get("collisionCount") != collisions
            status["collisionCount"] = collisions
        if changed:
            self._store.replace(DEPLOYMENTS, current)

    def _scale(self, d: Obj, rs: Obj, replicas: int) -> Obj:
        annotations = self._annotations(d, revision(rs), rs["metadata"].get("annotations"))
        if rs["spec"].get("replicas") == replicas and annotations == rs["metadata"].get(
                "annotations"):
            return rs
        rs = copy.deepcopy(rs)
        rs["spec"]["replicas"] = replicas
        rs["metadata"]["annotations"] = annotations
        return self._store.replace(REPLICASETS, rs)

    def _roll_new(self, d: Obj, new: Obj, old: list[Obj]) -> Obj:
        desired = int(d["spec"]["replicas"])
        current = int(new["spec"].get("replicas", 0))
        if current >= desired:
            return self._scale(d, new, desired)
        surge, _ = surge_and_unavailable(d)
        total = current + sum(int(rs["spec"].get("replicas", 0)) for rs in old)
        room = desired + surge - total
        if room <= 0:
            return new
        return self._scale(d, new, current + min(room, desired - current))

    def _roll_old(self, d: Obj, new: Obj, old: list[Obj]) -> None:
        old_count = sum(int(rs["spec"].get("replicas", 0)) for rs in old)
        if old_count == 0:
            return
        desired = int(d["spec"]["replicas"])
        _, max_unavailable = surge_and_unavailable(d)
        min_available = desired - max_unavailable
        all_count = old_count + int(new["spec"].get("replicas", 0))
        new_unavailable = int(new["spec"].get("replicas", 0)) - int(
            new.get("status", {}).get("availableReplicas", 0))
        budget = all_count - min_available - new_unavailable
        if budget <= 0:
            return
        old = sorted(old, key=lambda rs: rs["metadata"]["creationTimestamp"])
        # First drop old pods that are not available anyway: that costs no availability.
        for i, rs in enumerate(old):
            spare = int(rs["spec"].get("replicas", 0)) - int(
                rs.get("status", {}).get("availableReplicas", 0))
            cut = min(budget, max(spare, 0))
            if cut > 0:
                old[i] = self._scale(d, rs, int(rs["spec"]["replicas"]) - cut)
                budget -= cut
        available = sum(int(rs.get("status", {}).get("availableReplicas", 0))
                        for rs in [*old, new])
        allowed = available - min_available
        for rs in old:
            if allowed <= 0:
                break
            cut = min(int(rs["spec"].get("replicas", 0)), allowed)
            if cut > 0:
                self._scale(d, rs, int(rs["spec"]["replicas"]) - cut)
                allowed -= cut

    def _cleanup(self, d: Obj, old: list[Obj]) -> None:
        limit = int(d["spec"].get("revisionHistoryLimit", 10))
        excess = len(old) - limit
        for rs in sorted(old, key=revision)[: max(excess, 0)]:
            if rs["spec"].get("replicas", 0) == 0 and rs.get("status", {}).get(
                    "replicas", 0) == 0:
                self._store.delete(REPLICASETS, rs["metadata"]["namespace"],
                                   rs["metadata"]["name"])

    def _progress(self, d: Obj, status: str, reason: str, message: str) -> None:
        """Record a Progressing condition change right away (e.g. a new ReplicaSet)."""
        current = self._store.find(DEPLOYMENTS, d["metadata"]["namespace"], d["metadata"]["name"])
        if current is None:
            return
        now = timeutil.now()
        self._last_progress[current["metadata"]["uid"]] = now
        stamp = timeutil.rfc3339(now)
        conditions = current.setdefault("status", {}).setdefault("conditions", [])
        cond = next((c for c in conditions if c["type"] == "Progressing"), None)
        if cond is None:
            cond = {"type": "Progressing", "lastTransitionTime": stamp}
            conditions.append(cond)
        elif cond["status"] != status:
            cond["lastTransitionTime"] = stamp
        cond.update(status=status, reason=reason, message=message, lastUpdateTime=stamp)
        self._store.replace(DEPLOYMENTS, current)

    def write_status_all(self) -> None:
        for d in self._store.list(DEPLOYMENTS):
            new, old = self.split(d, self.owned_sets(d))
            status = compute_status(d, new, old, self._last_progress)
            if status != d.get("status"):
                updated = copy.deepcopy(d)
                updated["status"] = status
                self._store.replace(DEPLOYMENTS, updated)

    def forget_missing(self) -> None:
        alive = {d["metadata"]["uid"] for d in self._store.list(DEPLOYMENTS)}
        for uid in list(self._last_progress):
            if uid not in alive:
                del self._last_progress[uid]
