"""KubeClient and KubeClusters against the sandbox cluster, over real HTTPS."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.deploys.ports import Cluster, ClusterProvider
from bot.deploys.rollout import (
    REVISION_ANNOTATION,
    RolloutStatus,
    image_of,
    revisions,
    rollout_status,
    undo_patch,
)
from integrations.kubernetes import KubeClient, KubeClusters, KubeError
from sandbox import DeploymentConfig, RunningSandbox, SandboxConfig, start_sandbox
from tests.sandbox.conftest import KUBECTL, Kubectl, fast_config

NS = "default"


@asynccontextmanager
async def running(config: SandboxConfig, tmp_path: Path) -> AsyncIterator[
        tuple[RunningSandbox, KubeClusters]]:
    """A started sandbox with its first rollouts finished, and clusters for it."""
    sandbox = await start_sandbox(config, seed=7)
    clusters = KubeClusters(str(sandbox.write_kubeconfig(tmp_path / "kubeconfig")))
    try:
        for dep in config.deployments:
            assert (await wait_rollout(clusters.for_context(None), dep.name)).done
        yield sandbox, clusters
    finally:
        await clusters.close()
        await sandbox.stop()


@pytest.fixture
async def sandbox_and_kube(tmp_path: Path) -> AsyncIterator[tuple[RunningSandbox, KubeClient]]:
    async with running(fast_config(), tmp_path) as (sandbox, clusters):
        yield sandbox, clusters.for_context(None)


@pytest.fixture
def kube(sandbox_and_kube: tuple[RunningSandbox, KubeClient]) -> KubeClient:
    return sandbox_and_kube[1]


@pytest.fixture
def sandbox(sandbox_and_kube: tuple[RunningSandbox, KubeClient]) -> RunningSandbox:
    return sandbox_and_kube[0]


async def wait_rollout(kube: KubeClient, name: str, timeout: float = 5.0) -> RolloutStatus:
    """Poll like `kubectl rollout status` until the rollout is done or failed."""
    async with asyncio.timeout(timeout):
        while True:
            deployment = await kube.get_deployment(NS, name)
            assert deployment is not None
            status = rollout_status(deployment)
            if status.done or status.failed:
                return status
            await asyncio.sleep(0.02)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        # Polling the API is how a client learns anything; there is no event to await.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def observed(kube: KubeClient) -> bool:
    message = rollout_status(await deployment(kube)).message
    return not message.startswith("Waiting for deployment spec")


async def pod_count_is(kube: KubeClient, count: int) -> bool:
    return len(await kube.list_pods(NS, "app=web")) == count


async def deployment(kube: KubeClient, name: str = "web") -> dict[str, Any]:
    found = await kube.get_deployment(NS, name)
    assert found is not None
    return found


def set_image(image: str) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}


async def test_get_returns_the_api_json(kube: KubeClient) -> None:
    web = await deployment(kube)
    assert web["kind"] == "Deployment"
    assert web["metadata"]["annotations"][REVISION_ANNOTATION] == "1"
    assert web["status"]["availableReplicas"] == 3
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/web:1.0.0"
    # Timestamps stay as the server wrote them, not as Python datetimes.
    assert web["metadata"]["creationTimestamp"].endswith("Z")


async def test_strategic_patch_rolls_out_a_new_revision(kube: KubeClient,
                                                        sandbox: RunningSandbox) -> None:
    patched = await kube.patch_deployment(NS, "web", set_image("registry.local/web:1.1.0"))
    assert image_of(patched) == "registry.local/web:1.1.0"
    # Containers merged by name: the port the patch did not mention is still there.
    assert patched["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 8080
    request = sandbox.requests.matching("PATCH", "/deployments/web")[-1]
    assert request.headers["Content-Type"] == "application/strategic-merge-patch+json"
    status = await wait_rollout(kube, "web")
    assert status == RolloutStatus(True, False, 'deployment "web" successfully rolled out')
    web = await deployment(kube)
    assert web["metadata"]["annotations"][REVISION_ANNOTATION] == "2"


async def test_undo_is_a_roll_forward_sent_as_json_patch(kube: KubeClient,
                                                         sandbox: RunningSandbox) -> None:
    await kube.patch_deployment(NS, "web", set_image("registry.local/web:1.1.0"))
    assert (await wait_rollout(kube, "web")).done
    web = await deployment(kube)
    sets = await kube.list_replicasets(NS, "app=web")
    history = revisions(web, sets)
    assert [(r.number, r.images["app"]) for r in history] == [
        (1, "registry.local/web:1.0.0"), (2, "registry.local/web:1.1.0")]

    patch = undo_patch(web, sets)
    undone = await kube.patch_deployment(NS, "web", patch, "json")
    request = sandbox.requests.matching("PATCH", "/deployments/web")[-1]
    assert request.headers["Content-Type"] == "application/json-patch+json"
    assert request.json() == patch
    assert image_of(undone) == "registry.local/web:1.0.0"
    assert "pod-template-hash" not in undone["spec"]["template"]["metadata"]["labels"]
    assert (await wait_rollout(kube, "web")).done
    web = await deployment(kube)
    assert web["metadata"]["annotations"][REVISION_ANNOTATION] == "3"
    history = revisions(web, await kube.list_replicasets(NS, "app=web"))
    # The old ReplicaSet is reused and renumbered: revision 1 became 3.
    assert [(r.number, r.images["app"]) for r in history] == [
        (2, "registry.local/web:1.1.0"), (3, "registry.local/web:1.0.0")]


@pytest.fixture
def kubectl(sandbox: RunningSandbox, tmp_path: Path) -> Kubectl:
    if not Path(KUBECTL).exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("kubectl is required under CI=true")
        pytest.skip("kubectl is not installed")
    (tmp_path / "home").mkdir()
    return Kubectl(sandbox.write_kubeconfig(tmp_path / "kc"), tmp_path / "home")


async def test_undo_patch_and_status_match_kubectl(kube: KubeClient, sandbox: RunningSandbox,
                                                   kubectl: Kubectl) -> None:
    await kube.patch_deployment(NS, "web", set_image("registry.local/web:1.1.0"))
    assert (await wait_rollout(kube, "web")).done

    ours = undo_patch(await deployment(kube), await kube.list_replicasets(NS, "app=web"))
    assert (await kubectl("rollout", "undo", "deployment/web", "--dry-run=server")).code == 0
    sent = sandbox.requests.matching("PATCH", "/deployments/web")[-1]
    assert sent.query == {"dryRun": "All"}
    theirs = sent.json()
    # Go marshals the template's zero creationTimestamp as null; nothing else differs.
    assert theirs[0]["value"]["metadata"].pop("creationTimestamp") is None
    assert theirs == ours

    # Paused mid-rollout, the status stays put long enough to compare wording.
    await kube.patch_deployment(NS, "web", {"spec": {"paused": True}}, "merge")
    await kube.patch_deployment(NS, "web", set_image("registry.local/web:1.2.0"))
    await eventually(lambda: observed(kube))
    status = rollout_status(await deployment(kube))
    printed = await kubectl("rollout", "status", "deployment/web", "--watch=false")
    assert printed.out.strip() == status.message
    assert status.message.endswith("0 out of 3 new replicas have been updated...")


async def test_scale_goes_through_the_subresource(kube: KubeClient,
                                                  sandbox: RunningSandbox) -> None:
    scale = await kube.scale_deployment(NS, "web", 1)
    assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 1)
    request = sandbox.requests.matching("PATCH", "/deployments/web/scale")[-1]
    assert request.headers["Content-Type"] == "application/merge-patch+json"
    assert request.json() == {"spec": {"replicas": 1}}
    assert (await deployment(kube))["spec"]["replicas"] == 1
    assert (await wait_rollout(kube, "web")).done
    await eventually(lambda: pod_count_is(kube, 1))


async def test_canary_copy_and_service_switch(kube: KubeClient, sandbox: RunningSandbox) -> None:
    web = await deployment(kube)
    template = web["spec"]["template"]
    labels = {**template["metadata"]["labels"], "track": "canary"}
    body = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web-canary", "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {**template, "metadata": {"labels": labels}}},
    }
    created = await kube.create_deployment(NS, body)
    assert created["metadata"]["name"] == "web-canary"
    assert created["metadata"]["uid"] != web["metadata"]["uid"]
    request = sandbox.requests.matching("POST", "/deployments")[-1]
    assert request.headers["Content-Type"] == "application/json"
    assert (await wait_rollout(kube, "web-canary")).done
    canary_pods = await kube.list_pods(NS, "app=web,track=canary")
    assert len(canary_pods) == 1
    assert canary_pods[0]["status"]["phase"] == "Running"
    assert len(await kube.list_pods(NS, "app=web")) == 4

    with pytest.raises(KubeError) as duplicate:
        await kube.create_deployment(NS, body)
    assert (duplicate.value.status, duplicate.value.reason) == (409, "AlreadyExists")

    service = await kube.patch_service(NS, "web", {"spec": {"selector": {"track": "canary"}}})
    assert service["spec"]["selector"] == {"app": "web", "track": "canary"}
    request = sandbox.requests.matching("PATCH", "/services/web")[-1]
    assert request.headers["Content-Type"] == "application/merge-patch+json"
    fetched = await kube.get_service(NS, "web")
    assert fetched is not None and fetched["spec"]["selector"]["track"] == "canary"

    preview = await kube.create_service(NS, {
        "metadata": {"name": "web-canary"},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}})
    assert preview["spec"]["clusterIP"] and preview["spec"]["ports"][0]["targetPort"] == 8080
    request = sandbox.requests.matching("POST", "/services")[-1]
    assert request.headers["Content-Type"] == "application/json"


async def test_missing_objects_and_refusals(kube: KubeClient) -> None:
    assert await kube.get_deployment(NS, "nope") is None
    assert await kube.get_service(NS, "nope") is None
    with pytest.raises(KubeError) as missing:
        await kube.patch_deployment(NS, "nope", set_image("x:1"))
    assert (missing.value.status, missing.value.reason) == (404, "NotFound")
    assert "nope" in missing.value.message
    with pytest.raises(KubeError) as missing_scale:
        await kube.scale_deployment(NS, "nope", 2)
    assert missing_scale.value.reason == "NotFound"
    with pytest.raises(KubeError) as invalid:
        await kube.patch_deployment(NS, "web", {"spec": {"replicas": -1}}, "merge")
    assert (invalid.value.status, invalid.value.reason) == (422, "Invalid")
    # The client validates bodies against its models before sending anything.
    with pytest.raises(KubeError) as refused:
        await kube.create_deployment(NS, {"metadata": {"name": "x"}, "spec": {"bogus": 1}})
    assert (refused.value.status, refused.value.reason) == (None, "Invalid")
    # A non-list JSON patch would silently go out as a strategic merge patch.
    with pytest.raises(KubeError, match="list of operations"):
        await kube.patch_deployment(NS, "web", {"spec": {}}, "json")


async def test_pod_log_asks_for_the_tail(kube: KubeClient, sandbox: RunningSandbox) -> None:
    pod = (await kube.list_pods(NS, "app=web"))[0]
    text = await kube.pod_log(NS, pod["metadata"]["name"], container="app", tail_lines=3)
    assert "ready to serve traffic" in text
    request = sandbox.requests.matching("GET", "/log")[-1]
    assert request.query == {"container": "app", "tailLines": "3"}


async def test_crashing_image_exceeds_the_progress_deadline(tmp_path: Path) -> None:
    config = fast_config(deployments=[DeploymentConfig(
        name="web", image="registry.local/web:1.0.0", replicas=2, progress_deadline_seconds=1)])
    async with running(config, tmp_path) as (sandbox, clusters):
        sandbox.set_image_behaviour("2.0.0", crash=True)
        kube = clusters.for_context(None)
        await kube.patch_deployment(NS, "web", set_image("registry.local/web:2.0.0"))
        status = await wait_rollout(kube, "web", timeout=8)
        assert status == RolloutStatus(False, True,
                                       'deployment "web" exceeded its progress deadline')
        web = await deployment(kube)
        reasons = {c["type"]: c["reason"] for c in web["status"]["conditions"]}
        assert reasons["Progressing"] == "ProgressDeadlineExceeded"
        new_rs = revisions(web, await kube.list_replicasets(NS, "app=web"))[-1].replicaset
        crashed = [p for p in await kube.list_pods(NS, "app=web")
                   if p["metadata"]["name"].startswith(new_rs)]
        assert crashed
        log = await kube.pod_log(NS, crashed[0]["metadata"]["name"])
        assert "panic:" in log


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_server_is_unavailable(sandbox: RunningSandbox,
                                                 tmp_path: Path) -> None:
    path = sandbox.write_kubeconfig(tmp_path / "dead")
    port = sandbox.url.rsplit(":", 1)[1]
    path.write_text(path.read_text().replace(f":{port}", f":{_closed_port()}"))
    clusters = KubeClusters(str(path), request_timeout=(1.0, 1.0))
    try:
        kube = clusters.for_context(None)
        with pytest.raises(KubeError) as read:
            await kube.get_deployment(NS, "web")
        assert (read.value.status, read.value.reason) == (None, "Unavailable")
        with pytest.raises(KubeError) as write:
            await kube.scale_deployment(NS, "web", 2)
        assert write.value.reason == "Unavailable"
    finally:
        await clusters.close()


async def test_reads_are_retried_once_and_writes_never(tmp_path: Path) -> None:
    # A server that reads each request and hangs up without answering: the outcome
    # of a write is then unknown, so sending it again could apply it twice.
    seen: list[str] = []

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b" ", 1)[0].decode())
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    path = tmp_path / "plain-http"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    clusters = KubeClusters(str(path))
    try:
        kube = clusters.for_context(None)
        with pytest.raises(KubeError) as read:
            await kube.get_deployment(NS, "web")
        assert read.value.reason == "Unavailable"
        assert seen == ["GET", "GET"]
        seen.clear()
        body = {"metadata": {"name": "x"}, "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}},
                         "spec": {"containers": [{"name": "x", "image": "x:1"}]}}}}
        writes: list[Callable[[], Awaitable[object]]] = [
            lambda: kube.patch_deployment(NS, "web", set_image("x:2")),
            lambda: kube.scale_deployment(NS, "web", 2),
            lambda: kube.create_deployment(NS, body)]
        for write in writes:
            with pytest.raises(KubeError) as failed:
                await write()
            assert failed.value.reason == "Unavailable"
        assert seen == ["PATCH", "PATCH", "POST"]
    finally:
        await clusters.close()
        server.close()
        await server.wait_closed()


async def test_contexts_are_cached_and_checked(sandbox: RunningSandbox, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    clusters = KubeClusters(str(sandbox.write_kubeconfig(tmp_path / "kc", context="staging")))
    provider: ClusterProvider = clusters  # the domain's protocols, checked by mypy
    try:
        assert clusters.for_context(None) is clusters.for_context(None)
        named: Cluster = clusters.for_context("staging")
        assert named is clusters.for_context("staging")
        assert await provider.for_context("staging").get_deployment(NS, "web") is not None
        with pytest.raises(KubeError) as unknown:
            clusters.for_context("production")
        assert unknown.value.reason == "Unavailable" and "production" in unknown.value.message
    finally:
        await clusters.close()
    # Without a kubeconfig inside a pod, only the service account is used; a named
    # context cannot be honoured there, and here the account's files are absent.
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    in_pod = KubeClusters(None)
    with pytest.raises(KubeError, match="needs a kubeconfig"):
        in_pod.for_context("staging")
    with pytest.raises(KubeError, match="cannot load"):
        in_pod.for_context(None)


async def test_calls_do_not_block_the_event_loop(kube: KubeClient) -> None:
    # The sandbox answers on this same loop: a call that blocked it would never
    # get its response. The ticker shows the loop keeps turning meanwhile.
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.monotonic()
    try:
        results = await asyncio.wait_for(asyncio.gather(
            *(kube.get_deployment(NS, "web") for _ in range(20)),
            *(kube.list_pods(NS, "app=web") for _ in range(20))), 10)
    finally:
        task.cancel()
    during = [t for t in ticks if t >= started]
    assert len(results) == 40 and all(results)
    assert len(during) >= 3
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert max(gaps, default=0.0) < 0.5
