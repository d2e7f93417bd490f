"""The ``/scale`` subresource: an autoscaling/v1 Scale view of a workload."""

from __future__ import annotations

from typing import Any

from sandbox.errors import ApiError, invalid
from sandbox.resources import ResourceType
from sandbox.selectors import selector_string

Obj = dict[str, Any]


def scale_of(obj: Obj) -> Obj:
    meta = obj["metadata"]
    status = obj.get("status") or {}
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                     "resourceVersion": meta["resourceVersion"],
                     "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": obj["spec"].get("replicas", 1)},
        "status": {"replicas": status.get("replicas", 0),
                   "selector": selector_string(obj["spec"].get("selector"))},
    }


def apply_scale(rt: ResourceType, obj: Obj, scale: Any) -> Obj:
    """Copy the wanted replicas from a Scale body onto the workload."""
    name = obj["metadata"]["name"]
    if not isinstance(scale, dict):
        raise ApiError(400, "BadRequest", "the body of a Scale must be an object")
    replicas = (scale.get("spec") or {}).get("replicas", 0)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise invalid(rt, name, [("spec.replicas",
                                  f"Invalid value: {replicas!r}: must be greater than or equal "
                                  "to 0")])
    obj["spec"]["replicas"] = replicas
    return obj
