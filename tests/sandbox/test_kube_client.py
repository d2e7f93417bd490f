"""The official kubernetes client against the sandbox, as the bot will use it."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from sandbox import RunningSandbox
from sandbox.resources import PODS
from tests.sandbox.conftest import call, new_client


async def test_list_and_patch_deployment(api_client: client.ApiClient,
                                         sandbox: RunningSandbox) -> None:
    apps = client.AppsV1Api(api_client)
    listed = await call(apps.list_namespaced_deployment, "default",
                                     label_selector="app=web")
    assert [d.metadata.name for d in listed.items] == ["web"]
    assert listed.items[0].status.ready_replicas == 3
    none = await call(apps.list_namespaced_deployment, "default",
                                   label_selector="app=other")
    assert none.items == []

    body = {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "registry.local/web:1.1.0"}]}}}}
    patched = await call(apps.patch_namespaced_deployment, "web", "default", body)
    assert patched.metadata.generation == 2
    assert patched.spec.template.spec.containers[0].image == "registry.local/web:1.1.0"
    # The client sends a dict as a strategic merge patch: containers merge by name.
    request = await sandbox.requests.wait_for("PATCH", "/deployments/web")
    assert request.headers["Content-Type"] == "application/strategic-merge-patch+json"
    assert request.headers["Authorization"] == f"Bearer {sandbox.token}"
    assert patched.spec.template.spec.containers[0].ports[0].container_port == 8080


async def test_scale_subresource(api_client: client.ApiClient, sandbox: RunningSandbox) -> None:
    apps = client.AppsV1Api(api_client)
    scale = await call(apps.read_namespaced_deployment_scale, "web", "default")
    assert (scale.spec.replicas, scale.status.replicas, scale.status.selector) == (3, 3,
                                                                                   "app=web")
    await call(apps.patch_namespaced_deployment_scale, "web", "default",
                            {"spec": {"replicas": 1}})
    await sandbox.wait_until(lambda: len(sandbox.store.list(PODS)) == 1)
    scale = await call(apps.read_namespaced_deployment_scale, "web", "default")
    assert (scale.spec.replicas, scale.status.replicas) == (1, 1)


async def test_watch_sees_the_rollout(api_client: client.ApiClient) -> None:
    apps = client.AppsV1Api(api_client)
    listed = await call(apps.list_namespaced_deployment, "default")
    since = listed.metadata.resource_version

    def watch_until_complete() -> list[tuple[str, Any]]:
        seen: list[tuple[str, Any]] = []
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        events = stream.stream(  # type: ignore[no-untyped-call]
            apps.list_namespaced_deployment, "default", field_selector="metadata.name=web",
            resource_version=since, timeout_seconds=10)
        for event in events:
            obj = event["object"]
            seen.append((event["type"], obj))
            status = obj.status
            # Like kubectl rollout status: counts only mean something once observed.
            if (status.observed_generation or 0) >= obj.metadata.generation == 2 and (
                    status.updated_replicas == status.available_replicas == status.replicas == 3):
                stream.stop()  # type: ignore[no-untyped-call]
        return seen

    watcher = asyncio.create_task(asyncio.to_thread(watch_until_complete))
    await asyncio.sleep(0.1)
    await call(apps.patch_namespaced_deployment, "web", "default", {
        "spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "registry.local/web:1.2.0"}]}}}})
    seen = await asyncio.wait_for(watcher, 15)
    assert {kind for kind, _ in seen} == {"MODIFIED"}
    versions = [int(obj.metadata.resource_version) for _, obj in seen]
    assert versions == sorted(versions)
    reasons = {c.reason for _, obj in seen for c in obj.status.conditions or []
               if c.type == "Progressing"}
    assert {"NewReplicaSetCreated", "NewReplicaSetAvailable"} <= reasons


async def test_errors_are_status_objects(api_client: client.ApiClient) -> None:
    apps = client.AppsV1Api(api_client)
    with pytest.raises(ApiException) as missing:
        await call(apps.read_namespaced_deployment, "nope", "default")
    assert missing.value.status == 404
    assert '"reason": "NotFound"' in (missing.value.body or "")

    current = await call(apps.read_namespaced_deployment, "web", "default")
    current.spec.replicas = 4
    await call(apps.replace_namespaced_deployment, "web", "default", current)
    current.spec.replicas = 5  # still carries the old resourceVersion
    with pytest.raises(ApiException) as stale:
        await call(apps.replace_namespaced_deployment, "web", "default", current)
    assert stale.value.status == 409
    assert '"reason": "Conflict"' in (stale.value.body or "")

    existing = client.V1Service(metadata=client.V1ObjectMeta(name="web"), spec=client.V1ServiceSpec(
        selector={"app": "web"}, ports=[client.V1ServicePort(port=80)]))
    with pytest.raises(ApiException) as dup:
        await call(client.CoreV1Api(api_client).create_namespaced_service,
                                "default", existing)
    assert dup.value.status == 409 and '"reason": "AlreadyExists"' in (dup.value.body or "")

    bad = {"spec": {"replicas": -1}}
    with pytest.raises(ApiException) as invalid:
        await call(apps.patch_namespaced_deployment, "web", "default", bad)
    assert invalid.value.status == 422 and '"reason": "Invalid"' in (invalid.value.body or "")


async def test_service_selector_switch(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    svc = client.V1Service(
        metadata=client.V1ObjectMeta(name="web-preview", labels={"tier": "edge"}),
        spec=client.V1ServiceSpec(selector={"app": "web", "track": "blue"},
                                  ports=[client.V1ServicePort(port=80, target_port=8080)]))
    created = await call(core.create_namespaced_service, "default", svc)
    assert created.spec.cluster_ip and created.spec.type == "ClusterIP"
    patched = await call(core.patch_namespaced_service, "web-preview", "default",
                                      {"spec": {"selector": {"track": "green"}}},
                                      _content_type="application/merge-patch+json")
    assert patched.spec.selector == {"app": "web", "track": "green"}
    assert patched.spec.cluster_ip == created.spec.cluster_ip
    services = await call(core.list_namespaced_service, "default",
                                       label_selector="tier=edge")
    assert [s.metadata.name for s in services.items] == ["web-preview"]


async def test_pods_and_namespaces(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    pods = await call(core.list_namespaced_pod, "default", label_selector="app=web")
    assert len(pods.items) == 3
    pod = pods.items[0]
    assert pod.status.phase == "Running"
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
    assert pod.status.container_statuses[0].image == "registry.local/web:1.0.0"
    assert pod.metadata.owner_references[0].kind == "ReplicaSet"
    assert "pod-template-hash" in pod.metadata.labels
    namespaces = await call(core.list_namespace)
    assert [n.metadata.name for n in namespaces.items] == ["default"]
    events = await call(core.list_namespaced_event, "default")
    assert events.items == []


def _with_token(kubeconfig: Path, token: str) -> Path:
    other = kubeconfig.with_name("wrong-token")
    other.write_text(kubeconfig.read_text().replace("token: sandbox-token", f"token: {token}"))
    return other


async def test_wrong_token_is_rejected(kubeconfig: Path) -> None:
    other = await asyncio.to_thread(_with_token, kubeconfig, "wrong")
    apps = client.AppsV1Api(new_client(other))
    with pytest.raises(ApiException) as denied:
        await call(apps.list_namespaced_deployment, "default")
    assert denied.value.status == 401


def test_kubeconfig_pins_the_sandbox_ca(kubeconfig: Path, sandbox: RunningSandbox) -> None:
    import yaml

    doc = yaml.safe_load(kubeconfig.read_text())
    cluster = doc["clusters"][0]["cluster"]
    assert cluster["server"].startswith("https://127.0.0.1:")
    assert base64.b64decode(cluster["certificate-authority-data"]) == sandbox.ca_pem


async def test_namespaces_and_unsupported_patch_types(api_client: client.ApiClient) -> None:
    apps = client.AppsV1Api(api_client)
    empty = await call(client.CoreV1Api(api_client).list_namespaced_pod, "nope")
    assert empty.items == []
    body = {"metadata": {"name": "api"}, "spec": {
        "selector": {"matchLabels": {"app": "api"}},
        "template": {"metadata": {"labels": {"app": "api"}},
                     "spec": {"containers": [{"name": "api", "image": "api:1"}]}}}}
    with pytest.raises(ApiException) as missing:
        await call(apps.create_namespaced_deployment, "nope", body)
    assert missing.value.status == 404 and "namespaces" in (missing.value.body or "")
    created = await call(apps.create_namespaced_deployment, "default", body)
    assert created.spec.replicas == 1 and created.spec.strategy.type == "RollingUpdate"
    with pytest.raises(ApiException) as unsupported:
        await call(apps.patch_namespaced_deployment, "api", "default", {"spec": {}},
                   _content_type="application/apply-patch+yaml")
    assert unsupported.value.status == 415
