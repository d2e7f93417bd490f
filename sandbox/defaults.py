"""Defaulting and validation, as the API server applies them on every write.

Defaults matter beyond looks: the deployment controller finds "its" ReplicaSet
by comparing pod templates, and ``kubectl rollout undo`` compares them too, so
every stored template must be defaulted the same way.
"""

from __future__ import annotations

import re
from typing import Any

from sandbox import errors
from sandbox.resources import DEPLOYMENTS, NAMESPACES, SERVICES, ResourceType
from sandbox.selectors import labels_match, selector_requirements

Obj = dict[str, Any]
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def default_pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        image = str(container.get("image", ""))
        tagless = ":" not in image.rsplit("/", 1)[-1] and "@" not in image
        latest = tagless or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")


def default_deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxSurge", "25%")
        rolling.setdefault("maxUnavailable", "25%")
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {})
    template["metadata"].pop("creationTimestamp", None)
    default_pod_spec(template.setdefault("spec", {}))


def validate_deployment(obj: Obj, old: Obj | None) -> None:
    name = obj["metadata"]["name"]
    spec = obj.get("spec") or {}
    causes: list[tuple[str, str]] = []
    if not isinstance(spec.get("replicas"), int) or spec["replicas"] < 0:
        causes.append(("spec.replicas", "Invalid value: must be greater than or equal to 0"))
    selector = spec.get("selector")
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.append(("spec.selector", "Required value"))
    else:
        pod_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not labels_match(selector_requirements(selector), pod_labels):
            causes.append(("spec.template.metadata.labels",
                           "Invalid value: `selector` does not match template `labels`"))
        if old is not None and old["spec"].get("selector") != selector:
            causes.append(("spec.selector", "Invalid value: field is immutable"))
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    if not containers:
        causes.append(("spec.template.spec.containers", "Required value"))
    for i, container in enumerate(containers):
        if not container.get("name"):
            causes.append((f"spec.template.spec.containers[{i}].name", "Required value"))
        if not container.get("image"):
            causes.append((f"spec.template.spec.containers[{i}].image", "Required value"))
    if causes:
        raise errors.invalid(DEPLOYMENTS, name, causes)


def default_service(obj: Obj, cluster_ip: str) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("clusterIP", cluster_ip)
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    obj.setdefault("status", {"loadBalancer": {}})


def validate_service(obj: Obj, old: Obj | None) -> None:
    name = obj["metadata"]["name"]
    spec = obj.get("spec") or {}
    causes: list[tuple[str, str]] = []
    if not spec.get("ports") and spec.get("type") != "ExternalName":
        causes.append(("spec.ports", "Required value"))
    if old is not None and old["spec"].get("clusterIP") != spec.get("clusterIP"):
        causes.append(("spec.clusterIP", "Invalid value: field is immutable"))
    if causes:
        raise errors.invalid(SERVICES, name, causes)


def validate_metadata(rt: ResourceType, obj: Obj) -> None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        raise errors.invalid(rt, "", [("metadata.name", "Required value: name is required")])
    if not _DNS_SUBDOMAIN.match(meta["name"]):
        raise errors.invalid(rt, meta["name"], [(
            "metadata.name",
            f'Invalid value: "{meta["name"]}": a lowercase RFC 1123 subdomain must consist of '
            "lower case alphanumeric characters, '-' or '.', and must start and end with an "
            "alphanumeric character")])
    for field in ("labels", "annotations"):
        if meta.get(field) is None:
            meta.pop(field, None)


def default_namespace(obj: Obj) -> None:
    obj.setdefault("spec", {"finalizers": ["kubernetes"]})
    obj.setdefault("status", {"phase": "Active"})
    obj["metadata"].setdefault("labels", {})
    obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = obj["metadata"]["name"]


def prepare(rt: ResourceType, obj: Obj, old: Obj | None, cluster_ip: str = "") -> None:
    """Default then validate an object about to be stored by a client write."""
    validate_metadata(rt, obj)
    if rt is DEPLOYMENTS:
        default_deployment(obj)
        validate_deployment(obj, old)
    elif rt is SERVICES:
        default_service(obj, old["spec"]["clusterIP"] if old else cluster_ip)
        validate_service(obj, old)
    elif rt is NAMESPACES:
        default_namespace(obj)
