"""The resource types the sandbox serves, as discovery and routing see them."""

from __future__ import annotations

from dataclasses import dataclass

_STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update",
                   "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = _STANDARD_VERBS
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


DEPLOYMENTS = ResourceType("apps", "v1", "deployments", "deployment", "Deployment",
                           short_names=("deploy",), categories=("all",),
                           subresources=("scale", "status"))
REPLICASETS = ResourceType("apps", "v1", "replicasets", "replicaset", "ReplicaSet",
                           short_names=("rs",), categories=("all",),
                           subresources=("scale", "status"))
PODS = ResourceType("", "v1", "pods", "pod", "Pod", short_names=("po",),
                    categories=("all",), subresources=("status", "log"))
SERVICES = ResourceType("", "v1", "services", "service", "Service", short_names=("svc",),
                        categories=("all",), subresources=("status",),
                        verbs=("create", "delete", "get", "list", "patch", "update", "watch"))
NAMESPACES = ResourceType("", "v1", "namespaces", "namespace", "Namespace", namespaced=False,
                          short_names=("ns",), subresources=("status",),
                          verbs=("create", "delete", "get", "list", "patch", "update", "watch"))
EVENTS = ResourceType("", "v1", "events", "event", "Event", short_names=("ev",))

ALL_TYPES = (DEPLOYMENTS, REPLICASETS, PODS, SERVICES, NAMESPACES, EVENTS)
BY_ROUTE = {(t.group, t.version, t.plural): t for t in ALL_TYPES}

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
POD_TEMPLATE_HASH = "pod-template-hash"
