"""Objects built from the sandbox configuration and by the controllers."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

from sandbox.config import DeploymentConfig, ServiceConfig
from sandbox.resources import POD_TEMPLATE_HASH

Obj = dict[str, Any]
# Kubernetes' safe alphabet: no vowels (no words) and no look-alike characters.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def deployment(cfg: DeploymentConfig) -> Obj:
    labels = cfg.pod_labels()
    strategy: Obj = {"type": cfg.strategy}
    if cfg.strategy == "RollingUpdate":
        strategy["rollingUpdate"] = {"maxSurge": cfg.max_surge,
                                     "maxUnavailable": cfg.max_unavailable}
    meta: Obj = {"name": cfg.name, "namespace": cfg.namespace, "labels": dict(labels)}
    if cfg.annotations:
        meta["annotations"] = dict(cfg.annotations)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            "replicas": cfg.replicas,
            "selector": {"matchLabels": dict(labels)},
            "progressDeadlineSeconds": cfg.progress_deadline_seconds,
            "revisionHistoryLimit": cfg.revision_history_limit,
            "minReadySeconds": cfg.min_ready_seconds,
            "strategy": strategy,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{
                    "name": cfg.container_name, "image": cfg.image,
                    "ports": [{"containerPort": cfg.container_port}],
                }]},
            },
        },
    }


def service(cfg: ServiceConfig) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": cfg.name, "namespace": cfg.namespace,
                     "labels": dict(cfg.labels)},
        "spec": {"selector": dict(cfg.selector),
                 "ports": [{"name": "http", "port": cfg.port, "targetPort": cfg.target_port}]},
    }


def safe_encode(digest: bytes, length: int) -> str:
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in digest[:length])


def template_hash(template: Obj, collision_count: int) -> str:
    """A stable name suffix for a pod template, like the pod-template-hash label."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{canonical}#{collision_count}".encode()).digest()
    return safe_encode(digest, 10)


def random_suffix(rng: random.Random) -> str:
    return "".join(rng.choice(_SAFE_ALPHABET) for _ in range(5))


def strip_hash(template: Obj) -> Obj:
    """A template without its pod-template-hash label, for comparing templates."""
    meta = dict(template.get("metadata") or {})
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != POD_TEMPLATE_HASH}
    meta["labels"] = labels
    return {**template, "metadata": meta}


def owner_reference(owner: Obj) -> Obj:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


def controller_uid(obj: Obj) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref["uid"])
    return None
