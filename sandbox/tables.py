"""Server-side printing: ``kubectl get`` asks for ``as=Table`` and prints our cells.

Without these, kubectl would fall back to NAME and AGE only. Columns with
priority 1 are the extra ones ``-o wide`` shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox import timeutil
from sandbox.resources import DEPLOYMENTS, NAMESPACES, PODS, REPLICASETS, SERVICES, ResourceType
from sandbox.selectors import selector_string

Obj = dict[str, Any]
Column = tuple[str, str, int]  # name, type, priority


def _age(obj: Obj) -> str:
    created = obj["metadata"].get("creationTimestamp")
    if not created:
        return "<unknown>"
    return timeutil.human_age(timeutil.now() - timeutil.parse_rfc3339(created))


def _containers(template_spec: Obj) -> tuple[str, str]:
    containers = template_spec.get("containers") or []
    return (",".join(c["name"] for c in containers), ",".join(c["image"] for c in containers))


def _deployment(d: Obj) -> list[Any]:
    status = d.get("status") or {}
    names, images = _containers(d["spec"]["template"]["spec"])
    return [d["metadata"]["name"],
            f"{status.get('readyReplicas', 0)}/{d['spec'].get('replicas', 1)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), _age(d),
            names, images, selector_string(d["spec"].get("selector"))]


def _replicaset(rs: Obj) -> list[Any]:
    status = rs.get("status") or {}
    names, images = _containers(rs["spec"]["template"]["spec"])
    return [rs["metadata"]["name"], rs["spec"].get("replicas", 1), status.get("replicas", 0),
            status.get("readyReplicas", 0), _age(rs), names, images,
            selector_string(rs["spec"].get("selector"))]


def _pod_reason(pod: Obj) -> str:
    status = pod.get("status") or {}
    reason = str(status.get("phase", "Unknown"))
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            reason = str(waiting["reason"])
    return reason


def _pod(pod: Obj) -> list[Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    ready = sum(1 for cs in statuses if cs.get("ready"))
    restarts = sum(int(cs.get("restartCount", 0)) for cs in statuses)
    return [pod["metadata"]["name"], f"{ready}/{len(pod['spec']['containers'])}",
            _pod_reason(pod), str(restarts), _age(pod), pod.get("status", {}).get("podIP",
            "<none>"), pod["spec"].get("nodeName", "<none>"), "<none>", "<none>"]


def _service(svc: Obj) -> list[Any]:
    spec = svc["spec"]
    ports = ",".join(f"{p['port']}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    return [svc["metadata"]["name"], spec.get("type", "ClusterIP"), spec.get("clusterIP", ""),
            "<none>", ports or "<none>", _age(svc), selector or "<none>"]


def _namespace(ns: Obj) -> list[Any]:
    return [ns["metadata"]["name"], ns.get("status", {}).get("phase", "Active"), _age(ns)]


_NAME: Column = ("Name", "string", 0)
_AGE: Column = ("Age", "string", 0)
_WIDE_TEMPLATE: list[Column] = [("Containers", "string", 1), ("Images", "string", 1),
                                ("Selector", "string", 1)]
_LAYOUTS: dict[str, tuple[list[Column], Callable[[Obj], list[Any]]]] = {
    DEPLOYMENTS.plural: ([_NAME, ("Ready", "string", 0), ("Up-to-date", "integer", 0),
                          ("Available", "integer", 0), _AGE, *_WIDE_TEMPLATE], _deployment),
    REPLICASETS.plural: ([_NAME, ("Desired", "integer", 0), ("Current", "integer", 0),
                          ("Ready", "integer", 0), _AGE, *_WIDE_TEMPLATE], _replicaset),
    PODS.plural: ([_NAME, ("Ready", "string", 0), ("Status", "string", 0),
                   ("Restarts", "string", 0), _AGE, ("IP", "string", 1), ("Node", "string", 1),
                   ("Nominated Node", "string", 1), ("Readiness Gates", "string", 1)], _pod),
    SERVICES.plural: ([_NAME, ("Type", "string", 0), ("Cluster-IP", "string", 0),
                       ("External-IP", "string", 0), ("Port(s)", "string", 0), _AGE,
                       ("Selector", "string", 1)], _service),
    NAMESPACES.plural: ([_NAME, ("Status", "string", 0), _AGE], _namespace),
}


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def table(rt: ResourceType, items: list[Obj], resource_version: str,
          include_object: str = "PartialObjectMetadata") -> Obj:
    columns, cells = _LAYOUTS.get(rt.plural, ([_NAME, _AGE], lambda o: [o["metadata"]["name"],
                                                                        _age(o)]))
    definitions = [{"name": name, "type": kind, "format": "name" if name == "Name" else "",
                    "description": f"{name} of the {rt.singular}", "priority": priority}
                   for name, kind, priority in columns]
    rows = []
    for obj in items:
        row_object: Obj | None
        if include_object == "Object":
            row_object = obj
        elif include_object == "None":
            row_object = None
        else:
            row_object = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                          "metadata": obj["metadata"]}
        rows.append({"cells": cells(obj), "object": row_object})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": definitions, "rows": rows}
