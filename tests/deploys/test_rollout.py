"""kubectl's rollout algorithms on hand-written API objects."""

from __future__ import annotations

from typing import Any

import pytest

from bot.deploys.rollout import (
    REVISION_ANNOTATION,
    Revision,
    RolloutStatus,
    image_of,
    revisions,
    rollout_status,
    tag_of,
    undo_patch,
)

UID = "d-uid-1"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def deployment(*, generation: int = 2, replicas: int | None = 3,
               status: dict[str, Any] | None = None, image: str = "web:2",
               annotations: dict[str, str] | None = None, paused: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"template": template(image)}
    if replicas is not None:
        spec["replicas"] = replicas
    if paused:
        spec["paused"] = True
    return {
        "metadata": {"name": "web", "uid": UID, "generation": generation,
                     "annotations": annotations if annotations is not None
                     else {REVISION_ANNOTATION: "2"}},
        "spec": spec,
        "status": status if status is not None else {"observedGeneration": generation},
    }


def template(image: str, pod_hash: str | None = None) -> dict[str, Any]:
    labels = {"app": "web"}
    if pod_hash:
        labels["pod-template-hash"] = pod_hash
    return {"metadata": {"labels": labels},
            "spec": {"containers": [{"name": "app", "image": image},
                                    {"name": "proxy", "image": "envoy:1.30"}]}}


def replicaset(name: str, revision: int | str | None, image: str, *, owner: str = UID,
               annotations: dict[str, str] | None = None) -> dict[str, Any]:
    notes = dict(annotations or {})
    if revision is not None:
        notes[REVISION_ANNOTATION] = str(revision)
    return {
        "metadata": {"name": name, "annotations": notes,
                     "creationTimestamp": f"2025-01-0{revision or 9}T00:00:00Z",
                     "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": owner,
                                          "controller": True}]},
        "spec": {"template": template(image, pod_hash=name.rsplit("-", 1)[-1])},
    }


def status(**fields: Any) -> dict[str, Any]:
    return {"observedGeneration": 2, **fields}


# -- rollout_status: one test per branch of kubectl's DeploymentStatusViewer --

def test_spec_not_yet_observed() -> None:
    got = rollout_status(deployment(status={"observedGeneration": 1, "replicas": 3,
                                            "updatedReplicas": 3, "availableReplicas": 3}))
    assert got == RolloutStatus(False, False,
                                "Waiting for deployment spec update to be observed...")


def test_progress_deadline_exceeded_is_failed() -> None:
    conditions = [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                  {"type": "Progressing", "status": "False",
                   "reason": "ProgressDeadlineExceeded"}]
    got = rollout_status(deployment(status=status(replicas=4, updatedReplicas=1,
                                                  conditions=conditions)))
    assert got == RolloutStatus(False, True, 'deployment "web" exceeded its progress deadline')


def test_other_progressing_reasons_are_not_failures() -> None:
    conditions = [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]
    got = rollout_status(deployment(status=status(updatedReplicas=1, conditions=conditions)))
    assert not got.failed and not got.done


def test_waiting_for_new_replicas() -> None:
    got = rollout_status(deployment(status=status(replicas=4, updatedReplicas=1)))
    assert got == RolloutStatus(False, False, 'Waiting for deployment "web" rollout to finish: '
                                "1 out of 3 new replicas have been updated...")


def test_missing_counts_are_zero() -> None:
    got = rollout_status(deployment(status={"observedGeneration": 2}))
    assert got.message.endswith("0 out of 3 new replicas have been updated...")
    # No status at all (just created): generation 2 is not observed yet.
    assert rollout_status({"metadata": {"name": "web", "generation": 2}, "spec": {}}).message == (
        "Waiting for deployment spec update to be observed...")


def test_waiting_for_old_replicas_to_terminate() -> None:
    got = rollout_status(deployment(status=status(replicas=5, updatedReplicas=3,
                                                  availableReplicas=3)))
    assert got == RolloutStatus(False, False, 'Waiting for deployment "web" rollout to finish: '
                                "2 old replicas are pending termination...")


def test_waiting_for_updated_replicas_to_be_available() -> None:
    got = rollout_status(deployment(status=status(replicas=3, updatedReplicas=3,
                                                  availableReplicas=1)))
    assert got == RolloutStatus(False, False, 'Waiting for deployment "web" rollout to finish: '
                                "1 of 3 updated replicas are available...")


def test_successfully_rolled_out() -> None:
    got = rollout_status(deployment(status=status(replicas=3, updatedReplicas=3,
                                                  availableReplicas=3)))
    assert got == RolloutStatus(True, False, 'deployment "web" successfully rolled out')


def test_scaled_to_zero_is_done_and_unset_replicas_skip_the_first_check() -> None:
    assert rollout_status(deployment(replicas=0, status=status())).done
    # kubectl only compares against spec.replicas when it is set.
    assert rollout_status(deployment(replicas=None, status=status())).done


# -- revisions and undo_patch --

HISTORY = [
    replicaset("web-bbb", 2, "web:2", annotations={"kubernetes.io/change-cause": "deploy 2"}),
    replicaset("web-aaa", 1, "web:1", annotations={
        "kubernetes.io/change-cause": "deploy 1",
        "deployment.kubernetes.io/desired-replicas": "9"}),
    replicaset("other-ccc", 7, "other:7", owner="someone-else"),
    replicaset("web-unnumbered", None, "web:0"),
]


def test_revisions_are_owned_and_ordered() -> None:
    assert revisions(deployment(), HISTORY) == [
        Revision(1, "web-aaa", {"app": "web:1", "proxy": "envoy:1.30"}, "2025-01-01T00:00:00Z"),
        Revision(2, "web-bbb", {"app": "web:2", "proxy": "envoy:1.30"}, "2025-01-02T00:00:00Z"),
    ]
    assert revisions(deployment(), [replicaset("web-x", "junk", "web:1")]) == []


def test_undo_goes_to_the_previous_revision() -> None:
    own = {REVISION_ANNOTATION: "2", LAST_APPLIED: "{}",
           "deployment.kubernetes.io/desired-replicas": "3", "team": "payments"}
    patch = undo_patch(deployment(annotations=own), HISTORY)
    assert patch == [
        # The ReplicaSet's template without the controller's pod-template-hash label.
        {"op": "replace", "path": "/spec/template", "value": template("web:1")},
        # The Deployment keeps its own bookkeeping annotations and takes the rest from
        # the ReplicaSet; its other annotations ("team") are dropped, as kubectl does.
        {"op": "replace", "path": "/metadata/annotations", "value": {
            REVISION_ANNOTATION: "2", LAST_APPLIED: "{}",
            "deployment.kubernetes.io/desired-replicas": "3",
            "kubernetes.io/change-cause": "deploy 1"}},
    ]


def test_previous_is_the_second_newest_even_after_earlier_undos() -> None:
    # After an undo from 3 to 1, the history is 2, 3, 4: "previous" is 3.
    history = [replicaset("web-b", 2, "web:2"), replicaset("web-c", 3, "web:3"),
               replicaset("web-a", 4, "web:1")]
    patch = undo_patch(deployment(image="web:1"), history)
    assert patch[0]["value"] == template("web:3")


def test_undo_to_a_named_revision() -> None:
    history = [*HISTORY, replicaset("web-ccc", 3, "web:3")]
    patch = undo_patch(deployment(image="web:3"), history, to_revision=1)
    assert patch[0]["value"] == template("web:1")
    # 0 means "the previous one", as --to-revision=0 does.
    assert undo_patch(deployment(image="web:3"), history, to_revision=0)[0]["value"] == (
        template("web:2"))


def test_undo_to_the_running_template_is_skipped() -> None:
    assert undo_patch(deployment(image="web:2"), HISTORY, to_revision=2) == []


@pytest.mark.parametrize(("replicasets", "to_revision", "message"), [
    ([], None, 'no rollout history found for deployment "web"'),
    ([replicaset("web-bbb", 2, "web:2")], None, "no previous revision"),
    (HISTORY, 5, "unable to find specified revision 5 in history"),
    (HISTORY, 7, "(revisions: 1, 2)"),  # 7 belongs to another Deployment
    (HISTORY, -1, "unable to find specified revision -1"),
])
def test_undo_without_a_target(replicasets: list[dict[str, Any]], to_revision: int | None,
                               message: str) -> None:
    with pytest.raises(ValueError, match="^.*" + message.replace("(", r"\(").replace(")", r"\)")):
        undo_patch(deployment(), replicasets, to_revision)


def test_undo_of_a_paused_deployment_is_refused() -> None:
    with pytest.raises(ValueError, match="paused"):
        undo_patch(deployment(paused=True), HISTORY)


# -- images and tags --

def test_image_of() -> None:
    assert image_of(deployment(image="web:9")) == "web:9"
    assert image_of(deployment(), "proxy") == "envoy:1.30"
    assert image_of(deployment(), "missing") is None
    assert image_of({"spec": {}}) is None


@pytest.mark.parametrize(("image", "tag"), [
    ("web:1.2.3", "1.2.3"),
    ("web", "latest"),
    ("registry.example.com/team/web:2.0-rc1", "2.0-rc1"),
    ("registry:5000/x/y:tag", "tag"),
    ("registry:5000/x/y", "latest"),
    ("localhost:5000/web", "latest"),
    ("web@sha256:abc123", "sha256:abc123"),
    ("registry:5000/x/y:1.0@sha256:abc123", "sha256:abc123"),
    ("web:", "latest"),
])
def test_tag_of(image: str, tag: str) -> None:
    assert tag_of(image) == tag
