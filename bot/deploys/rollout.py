"""kubectl's rollout algorithms for Deployments, as pure functions.

They read the API's own JSON (the dicts `Cluster` returns) the way
`kubectl rollout status` and `kubectl rollout undo` read typed objects: a
missing number is 0, a missing condition is absent. No I/O here, so the deploy
service decides when to fetch and when to write.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
POD_TEMPLATE_HASH = "pod-template-hash"

# Deployment annotations that describe the Deployment itself rather than a
# revision: on undo kubectl keeps the Deployment's values and never copies
# these from the ReplicaSet being restored.
_DEPLOYMENT_OWN_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION_ANNOTATION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


@dataclass(frozen=True)
class RolloutStatus:
    """One reading of `kubectl rollout status`: `done` and `failed` are final."""

    done: bool
    failed: bool
    message: str


@dataclass(frozen=True)
class Revision:
    """One entry of a Deployment's rollout history (one owned ReplicaSet)."""

    number: int
    replicaset: str
    images: dict[str, str]  # container name -> image
    created: str | None


def _count(status: dict[str, Any], key: str) -> int:
    # API servers omit zero counts (omitempty), as Go's zero value reads them.
    return int(status.get(key) or 0)


def rollout_status(deployment: dict[str, Any]) -> RolloutStatus:
    """What `kubectl rollout status deployment/<name>` would print now."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    name = meta.get("name", "")
    if int(meta.get("generation") or 0) > _count(status, "observedGeneration"):
        # Counts describe an older spec until the controller has seen this one.
        return RolloutStatus(False, False, "Waiting for deployment spec update to be observed...")
    progressing = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), None
    )
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return RolloutStatus(False, True, f'deployment "{name}" exceeded its progress deadline')
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    desired = spec.get("replicas")
    updated = _count(status, "updatedReplicas")
    if desired is not None and updated < int(desired):
        return RolloutStatus(
            False,
            False,
            waiting + f"{updated} out of {int(desired)} new replicas have been updated...",
        )
    replicas = _count(status, "replicas")
    if replicas > updated:
        return RolloutStatus(
            False, False, waiting + f"{replicas - updated} old replicas are pending termination..."
        )
    available = _count(status, "availableReplicas")
    if available < updated:
        return RolloutStatus(
            False, False, waiting + f"{available} of {updated} updated replicas are available..."
        )
    return RolloutStatus(True, False, f'deployment "{name}" successfully rolled out')


def _revision_number(obj: dict[str, Any]) -> int | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    try:
        return int(annotations[REVISION_ANNOTATION])
    except (KeyError, TypeError, ValueError):
        return None  # kubectl skips ReplicaSets whose revision it cannot read


def _owned(
    deployment: dict[str, Any], replicasets: list[dict[str, Any]]
) -> list[tuple[int, dict[str, Any]]]:
    """(revision, ReplicaSet) for the ReplicaSets this Deployment owns, oldest first.

    Ownership is by uid, not by name or labels: a selector can match another
    Deployment's ReplicaSets, and a recreated Deployment has a new uid.
    """
    uid = (deployment.get("metadata") or {}).get("uid")
    owned: list[tuple[int, dict[str, Any]]] = []
    for rs in replicasets:
        refs = (rs.get("metadata") or {}).get("ownerReferences") or []
        number = _revision_number(rs)
        if uid and number is not None and any(ref.get("uid") == uid for ref in refs):
            owned.append((number, rs))
    owned.sort(key=lambda pair: pair[0])
    return owned


def _containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    return list((template.get("spec") or {}).get("containers") or [])


def revisions(deployment: dict[str, Any], replicasets: list[dict[str, Any]]) -> list[Revision]:
    """The Deployment's rollout history, oldest first (`kubectl rollout history`)."""
    history = []
    for number, rs in _owned(deployment, replicasets):
        meta = rs.get("metadata") or {}
        template = (rs.get("spec") or {}).get("template") or {}
        images = {c.get("name", ""): c.get("image", "") for c in _containers(template)}
        history.append(
            Revision(number, meta.get("name", ""), images, meta.get("creationTimestamp"))
        )
    return history


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    """A pod template minus the label the controller adds to its ReplicaSet's copy."""
    stripped = copy.deepcopy(template)
    meta = stripped.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("labels"), dict):
        meta["labels"].pop(POD_TEMPLATE_HASH, None)
        if not meta["labels"]:
            del meta["labels"]  # Go drops an emptied map when it marshals the patch
    return stripped


def undo_patch(
    deployment: dict[str, Any], replicasets: list[dict[str, Any]], to_revision: int | None = None
) -> list[dict[str, Any]]:
    """The JSON patch `kubectl rollout undo [--to-revision=N]` sends.

    The target is the newest revision below the latest (or `to_revision`; 0
    means the previous one, as in kubectl). Its pod template, minus
    `pod-template-hash`, replaces `/spec/template`; the annotations become the
    Deployment's own bookkeeping ones plus the ReplicaSet's others. The
    controller then rolls forward to a new revision number.

    Returns [] when the Deployment already runs that template (kubectl's
    "skipped rollback"). Raises ValueError when there is nothing to go back to,
    the revision is unknown, or the Deployment is paused.
    """
    name = (deployment.get("metadata") or {}).get("name", "")
    owned = _owned(deployment, replicasets)
    if to_revision is not None and to_revision < 0:
        raise ValueError(f"unable to find specified revision {to_revision} in history")
    if to_revision:
        target = next((rs for number, rs in owned if number == to_revision), None)
        if target is None:
            known = ", ".join(str(number) for number, _ in owned) or "none"
            raise ValueError(
                f"unable to find specified revision {to_revision} in history of "
                f'deployment "{name}" (revisions: {known})'
            )
    else:
        if len(owned) < 2:
            raise ValueError(
                f'no rollout history found for deployment "{name}": '
                "there is no previous revision to roll back to"
            )
        target = owned[-2][1]
    spec = deployment.get("spec") or {}
    if spec.get("paused"):
        raise ValueError(
            f"you cannot roll back a paused deployment; resume deployment/{name} "
            "first and try again"
        )
    template = _without_hash((target.get("spec") or {}).get("template") or {})
    if template == _without_hash(spec.get("template") or {}):
        return []
    current = (deployment.get("metadata") or {}).get("annotations") or {}
    annotations = {k: v for k, v in current.items() if k in _DEPLOYMENT_OWN_ANNOTATIONS}
    restored = (target.get("metadata") or {}).get("annotations") or {}
    annotations.update({k: v for k, v in restored.items() if k not in _DEPLOYMENT_OWN_ANNOTATIONS})
    return [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]


def image_of(deployment: dict[str, Any], container: str | None = None) -> str | None:
    """The image of `container` (default: the first container) in the pod template."""
    template = (deployment.get("spec") or {}).get("template") or {}
    for c in _containers(template):
        if container is None or c.get("name") == container:
            image = c.get("image")
            return str(image) if image is not None else None
    return None


def tag_of(image: str) -> str:
    """The version part of an image reference.

    `registry:5000/team/web:1.4` -> `1.4` (a colon before the last `/` is a
    registry port, not a tag); `web@sha256:ab..` -> `sha256:ab..` (with a
    digest the runtime ignores any tag, so the digest is the version); no
    tag means `latest`, as for docker pull.
    """
    if "@" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    _, colon, tag = last.partition(":")
    return tag if colon and tag else "latest"
