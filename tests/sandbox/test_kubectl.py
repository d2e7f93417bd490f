"""kubectl against the sandbox: the commands a person would run during a deploy."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from sandbox import RunningSandbox
from sandbox.resources import DEPLOYMENTS, REPLICASETS, REVISION_ANNOTATION
from tests.sandbox.conftest import Kubectl, fast_config

REPO_ROOT = str(Path(__file__).resolve().parents[2])


async def test_get_prints_server_side_columns(kubectl: Kubectl) -> None:
    result = await kubectl("get", "deploy,rs,pods,svc", "-o", "wide")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    header = next(line for line in lines if line.startswith("NAME") and "UP-TO-DATE" in line)
    assert header.split()[:5] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    row = next(line for line in lines if line.startswith("deployment.apps/web"))
    assert row.split()[1:4] == ["3/3", "3", "3"]
    assert "registry.local/web:1.0.0" in row and "app=web" in row
    assert sum(1 for line in lines if line.startswith("pod/web-")) == 3
    assert any(line.startswith("service/web") and "ClusterIP" in line for line in lines)


async def test_get_json_has_real_metadata(kubectl: Kubectl) -> None:
    result = await kubectl("get", "deploy", "web", "-o", "json")
    assert result.code == 0, result.err
    deployment = json.loads(result.out)
    meta = deployment["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    assert meta["generation"] == 1
    assert meta["annotations"][REVISION_ANNOTATION] == "1"
    assert deployment["status"]["observedGeneration"] == 1
    reasons = {c["type"]: c["reason"] for c in deployment["status"]["conditions"]}
    assert reasons == {"Available": "MinimumReplicasAvailable",
                       "Progressing": "NewReplicaSetAvailable"}


async def test_set_image_rollout_history_undo(kubectl: Kubectl, sandbox: RunningSandbox) -> None:
    result = await kubectl("set", "image", "deployment/web", "app=registry.local/web:2.0.0")
    assert result.code == 0, result.err
    patch = sandbox.requests.matching("PATCH", "/deployments/web")[-1]
    assert patch.headers["Content-Type"] == "application/strategic-merge-patch+json"
    assert sandbox.deployment_image("default", "web") == "registry.local/web:2.0.0"

    status = await kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    assert status.code == 0, status.err
    assert 'deployment "web" successfully rolled out' in status.out

    history = await kubectl("rollout", "history", "deployment/web")
    assert history.code == 0, history.err
    assert [line.split()[0] for line in history.out.splitlines()[2:] if line.strip()] == [
        "1", "2"]

    undo = await kubectl("rollout", "undo", "deployment/web")
    assert undo.code == 0, undo.err
    assert "rolled back" in undo.out
    undo_patch = sandbox.requests.matching("PATCH", "/deployments/web")[-1]
    assert undo_patch.headers["Content-Type"] == "application/json-patch+json"
    assert sandbox.deployment_image("default", "web") == "registry.local/web:1.0.0"
    status = await kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    assert status.code == 0, status.err

    # A rollback is a roll-forward: the old ReplicaSet becomes revision 3.
    deployment = sandbox.get(DEPLOYMENTS, "default", "web")
    assert deployment["metadata"]["annotations"][REVISION_ANNOTATION] == "3"
    history = await kubectl("rollout", "history", "deployment/web")
    assert [line.split()[0] for line in history.out.splitlines()[2:] if line.strip()] == [
        "2", "3"]
    sets = {rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs
            for rs in sandbox.store.list(REPLICASETS, "default")}
    assert sets["registry.local/web:1.0.0"]["spec"]["replicas"] == 3
    assert sets["registry.local/web:2.0.0"]["spec"]["replicas"] == 0


async def test_rollout_history_shows_change_cause(kubectl: Kubectl) -> None:
    await kubectl("annotate", "deployment/web", "kubernetes.io/change-cause=deploy 2.0.0 by ana")
    result = await kubectl("set", "image", "deployment/web", "app=registry.local/web:2.0.0")
    assert result.code == 0, result.err
    assert (await kubectl("rollout", "status", "deployment/web", "--timeout=20s")).code == 0
    history = await kubectl("rollout", "history", "deployment/web")
    assert "deploy 2.0.0 by ana" in history.out


async def test_scale_goes_through_the_scale_subresource(kubectl: Kubectl,
                                                        sandbox: RunningSandbox) -> None:
    result = await kubectl("scale", "deployment/web", "--replicas=5")
    assert result.code == 0, result.err
    patch = sandbox.requests.matching("PATCH", "/deployments/web/scale")[-1]
    assert patch.json() == {"spec": {"replicas": 5}}
    await sandbox.wait_until(lambda: sandbox.get(DEPLOYMENTS, "default", "web")["status"].get(
        "availableReplicas") == 5)
    result = await kubectl("get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas}")
    assert result.out == "5"


async def test_crashing_image_exceeds_progress_deadline(kubectl: Kubectl,
                                                        sandbox: RunningSandbox) -> None:
    patch = await kubectl("patch", "deployment/web", "-p",
                          '{"spec":{"progressDeadlineSeconds":1}}')
    assert patch.code == 0, patch.err
    result = await kubectl("set", "image", "deployment/web", "app=registry.local/web:2.0.0-crash")
    assert result.code == 0, result.err
    status = await kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    assert status.code != 0
    assert 'deployment "web" exceeded its progress deadline' in status.err

    pods = await kubectl("get", "pods", "-o", "json")
    crashing = [p for p in json.loads(pods.out)["items"]
                if p["spec"]["containers"][0]["image"].endswith("-crash")]
    assert crashing
    container = crashing[0]["status"]["containerStatuses"][0]
    assert container["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert container["restartCount"] >= 1 and container["ready"] is False
    # maxUnavailable 25% of 3 rounds down to 0: every old pod keeps serving.
    assert sandbox.get(DEPLOYMENTS, "default", "web")["status"]["availableReplicas"] == 3

    described = await kubectl("describe", "deployment", "web")
    assert described.code == 0, described.err
    assert "ProgressDeadlineExceeded" in described.out
    logs = await kubectl("logs", crashing[0]["metadata"]["name"])
    assert logs.code == 0, logs.err
    assert "panic:" in logs.out


async def test_rollout_status_times_out_while_pods_are_slow(kubectl: Kubectl,
                                                            sandbox: RunningSandbox) -> None:
    sandbox.config.pod_ready_seconds = 30.0
    await kubectl("set", "image", "deployment/web", "app=registry.local/web:3.0.0")
    status = await kubectl("rollout", "status", "deployment/web", "--timeout=1s")
    assert status.code != 0
    assert "timed out waiting for the condition" in status.err


async def test_recreate_strategy_replaces_all_pods() -> None:
    from sandbox import DeploymentConfig, start_sandbox

    cfg = fast_config(deployments=[DeploymentConfig(name="db", image="db:1", replicas=2,
                                                    strategy="Recreate")], services=[])
    running = await start_sandbox(cfg)
    try:
        from sandbox.resources import PODS

        await running.wait_until(lambda: len(running.store.list(PODS)) == 2)
        d = running.get(DEPLOYMENTS, "default", "db")
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "db:2"
        running.store.replace(DEPLOYMENTS, d)
        images_seen: set[frozenset[str]] = set()

        def done() -> bool:
            pods = running.store.list(PODS)
            images_seen.add(frozenset(p["spec"]["containers"][0]["image"] for p in pods))
            status = running.get(DEPLOYMENTS, "default", "db")["status"]
            return bool(status.get("updatedReplicas") == 2 == status.get("availableReplicas"))
        await running.wait_until(done)
        assert frozenset({"db:1", "db:2"}) not in images_seen  # never both at once
    finally:
        await running.stop()


async def test_undo_after_a_failed_rollout_recovers(kubectl: Kubectl,
                                                    sandbox: RunningSandbox) -> None:
    await kubectl("patch", "deployment/web", "-p", '{"spec":{"progressDeadlineSeconds":1}}')
    await kubectl("set", "image", "deployment/web", "app=registry.local/web:2.0.0-crash")
    failed = await kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    assert failed.code != 0
    undo = await kubectl("rollout", "undo", "deployment/web")
    assert undo.code == 0, undo.err
    status = await kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    assert status.code == 0, status.err
    assert sandbox.deployment_image("default", "web") == "registry.local/web:1.0.0"
    pods = await kubectl("get", "pods", "-o", "jsonpath={.items[*].spec.containers[0].image}")
    assert pods.out.split() == ["registry.local/web:1.0.0"] * 3


async def test_create_and_apply_from_a_manifest(kubectl: Kubectl, tmp_path: Path) -> None:
    manifest = tmp_path / "api.json"
    doc = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
                    "template": {"metadata": {"labels": {"app": "api"}},
                                 "spec": {"containers": [{"name": "api", "image": "api:1"}]}}}}
    await asyncio.to_thread(manifest.write_text, json.dumps(doc))
    created = await kubectl("create", "-f", str(manifest))
    assert created.code == 0, created.err
    doc["spec"]["replicas"] = 3  # type: ignore[index]
    await asyncio.to_thread(manifest.write_text, json.dumps(doc))
    applied = await kubectl("apply", "-f", str(manifest))
    assert applied.code == 0, applied.err
    assert (await kubectl("rollout", "status", "deploy/api", "--timeout=20s")).code == 0
    replicas = await kubectl("get", "deploy", "api", "-o", "jsonpath={.status.readyReplicas}")
    assert replicas.out == "3"
    doc["metadata"] = {"name": "mismatch"}
    doc["spec"]["template"]["metadata"]["labels"] = {"app": "other"}  # type: ignore[index]
    await asyncio.to_thread(manifest.write_text, json.dumps(doc))
    rejected = await kubectl("create", "-f", str(manifest))
    assert rejected.code != 0
    assert "`selector` does not match template `labels`" in rejected.err


async def test_cli_serves_until_interrupted(tmp_path: Path) -> None:
    config = tmp_path / "sandbox.yaml"
    await asyncio.to_thread(config.write_text, "deployments: [{name: web, image: 'web:1'}]\n")
    kubeconfig = tmp_path / "kc"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox", "--config", str(config), "--port", "0",
        "--prometheus-port", "0", "--kubeconfig", str(kubeconfig),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT)
    try:
        assert proc.stdout is not None
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
                 for _ in range(3)]
        assert lines[0].startswith("sandbox Kubernetes API: https://127.0.0.1:")
        assert lines[1].startswith("sandbox Prometheus API: http://127.0.0.1:")
        assert await asyncio.to_thread(kubeconfig.exists)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    assert b"sandbox stopped" in out


async def test_imperative_create_sends_protobuf(kubectl: Kubectl,
                                                sandbox: RunningSandbox) -> None:
    created = await kubectl("create", "deployment", "hello", "--image=hello:1", "--replicas=2",
                            "--port=8080")
    assert created.code == 0, created.err
    post = sandbox.requests.matching("POST", "/deployments")[-1]
    assert post.headers["Content-Type"] == "application/vnd.kubernetes.protobuf"
    assert (await kubectl("create", "service", "clusterip", "hello", "--tcp=80:8080")).code == 0
    assert (await kubectl("create", "namespace", "team-a")).code == 0
    assert (await kubectl("rollout", "status", "deploy/hello", "--timeout=20s")).code == 0
    deployment = sandbox.get(DEPLOYMENTS, "default", "hello")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["ports"][0]["containerPort"]) == ("hello:1", 8080)
    assert deployment["spec"]["replicas"] == 2
    from sandbox.resources import NAMESPACES, SERVICES

    service = sandbox.get(SERVICES, "default", "hello")
    assert service["spec"]["selector"] == {"app": "hello"}
    assert service["spec"]["ports"][0]["targetPort"] == 8080
    assert sandbox.get(NAMESPACES, None, "team-a")["status"]["phase"] == "Active"
