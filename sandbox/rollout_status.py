"""A Deployment's status and its Available / Progressing conditions.

``kubectl rollout status`` reads exactly these fields, so the rules mirror the
upstream controller: progress is any increase in updated, ready or available
replicas (or a decrease of old ones); no progress for progressDeadlineSeconds
since the last progress is ``ProgressDeadlineExceeded``.
"""

from __future__ import annotations

from typing import Any

from sandbox import timeutil
from sandbox.strategy import surge_and_unavailable

Obj = dict[str, Any]


def _count(rs: Obj | None, key: str) -> int:
    return int((rs or {}).get("status", {}).get(key, 0))


def _conditions(status: Obj) -> dict[str, Obj]:
    return {c["type"]: dict(c) for c in status.get("conditions") or []}


def _set(conds: dict[str, Obj], kind: str, status: str, reason: str, message: str,
         stamp: str, touch: bool) -> None:
    """Update a condition; lastTransitionTime moves only when status flips."""
    cond = conds.get(kind)
    if cond is None or cond["status"] != status:
        conds[kind] = {"type": kind, "status": status, "lastUpdateTime": stamp,
                       "lastTransitionTime": stamp, "reason": reason, "message": message}
        return
    if touch or cond.get("reason") != reason or cond.get("message") != message:
        cond.update(reason=reason, message=message, lastUpdateTime=stamp)


def compute_status(d: Obj, new: Obj | None, old: list[Obj],
                   last_progress: dict[str, float]) -> Obj:
    previous = d.get("status") or {}
    spec = d["spec"]
    desired = int(spec.get("replicas", 1))
    sets = [rs for rs in [new, *old] if rs is not None]
    counts = {
        "replicas": sum(_count(rs, "replicas") for rs in sets),
        "updatedReplicas": _count(new, "replicas"),
        "readyReplicas": sum(_count(rs, "readyReplicas") for rs in sets),
        "availableReplicas": sum(_count(rs, "availableReplicas") for rs in sets),
    }
    total_spec = sum(int(rs["spec"].get("replicas", 0)) for rs in sets)
    counts["unavailableReplicas"] = max(total_spec - counts["availableReplicas"], 0)
    status: Obj = {"observedGeneration": d["metadata"].get("generation", 1)}
    # omitempty: zero counts are absent on a real server, clients must cope.
    status.update({k: v for k, v in counts.items() if v})
    if previous.get("collisionCount"):
        status["collisionCount"] = previous["collisionCount"]

    uid = d["metadata"]["uid"]
    now = timeutil.now()
    stamp = timeutil.rfc3339(now)
    conds = _conditions(previous)
    _, max_unavailable = surge_and_unavailable(d)
    if counts["availableReplicas"] >= desired - max_unavailable:
        _set(conds, "Available", "True", "MinimumReplicasAvailable",
             "Deployment has minimum availability.", stamp, False)
    else:
        _set(conds, "Available", "False", "MinimumReplicasUnavailable",
             "Deployment does not have minimum availability.", stamp, False)

    name = new["metadata"]["name"] if new else ""
    current = conds.get("Progressing")
    if spec.get("paused"):
        _set(conds, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused",
             stamp, False)
    elif current is not None and current.get("reason") == "DeploymentPaused":
        last_progress[uid] = now
        _set(conds, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed",
             stamp, True)
    else:
        complete_before = (current is not None
                           and current.get("reason") == "NewReplicaSetAvailable"
                           and counts["replicas"] == counts["updatedReplicas"])
        complete = (counts["updatedReplicas"] == desired and counts["replicas"] == desired
                    and counts["availableReplicas"] == desired)
        old_before = int(previous.get("replicas", 0)) - int(previous.get("updatedReplicas", 0))
        progressed = (
            counts["updatedReplicas"] > int(previous.get("updatedReplicas", 0))
            or counts["replicas"] - counts["updatedReplicas"] < old_before
            or counts["readyReplicas"] > int(previous.get("readyReplicas", 0))
            or counts["availableReplicas"] > int(previous.get("availableReplicas", 0)))
        if complete_before:
            pass
        elif complete:
            last_progress[uid] = now
            _set(conds, "Progressing", "True", "NewReplicaSetAvailable",
                 f'ReplicaSet "{name}" has successfully progressed.', stamp, True)
        elif progressed:
            last_progress[uid] = now
            _set(conds, "Progressing", "True", "ReplicaSetUpdated",
                 f'ReplicaSet "{name}" is progressing.', stamp, True)
        elif current is not None and _timed_out(d, current, last_progress.get(uid), now):
            _set(conds, "Progressing", "False", "ProgressDeadlineExceeded",
                 f'ReplicaSet "{name}" has timed out progressing.', stamp, False)
    order = {"Available": 0, "Progressing": 1}
    status["conditions"] = sorted(conds.values(), key=lambda c: order.get(c["type"], 2))
    return status


def _timed_out(d: Obj, cond: Obj, last: float | None, now: float) -> bool:
    reason = cond.get("reason")
    if reason == "ProgressDeadlineExceeded":
        return True
    if reason == "NewReplicaSetAvailable":
        return False
    if last is None:
        last = timeutil.parse_rfc3339(cond["lastUpdateTime"])
    return now > last + int(d["spec"].get("progressDeadlineSeconds", 600))
