"""Simulated kubelet: pods start, become ready after a delay, or crash-loop.

Creation times and readiness times are kept here at full precision because
object timestamps have one-second resolution and tests use sub-second delays.
"""

from __future__ import annotations

import copy
import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any

from sandbox import manifests, timeutil
from sandbox.config import SandboxConfig
from sandbox.resources import PODS
from sandbox.store import Store

Obj = dict[str, Any]
NODE_NAME = "sandbox-node"
HOST_IP = "192.168.49.2"


@dataclass
class PodTimes:
    created: float
    ready: float | None = None


class Kubelet:
    def __init__(self, store: Store, config: SandboxConfig, rng: random.Random) -> None:
        self._store = store
        self._config = config
        self._rng = rng
        self._times: dict[str, PodTimes] = {}
        self._next_ip = 10

    def create_pod(self, rs: Obj) -> Obj:
        template = copy.deepcopy(rs["spec"]["template"])
        meta = template.get("metadata") or {}
        rs_meta = rs["metadata"]
        spec = template["spec"]
        spec["nodeName"] = NODE_NAME
        spec.setdefault("serviceAccountName", "default")
        ip = f"10.244.0.{self._next_ip % 250 + 2}"
        self._next_ip += 1
        pod: Obj = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": f"{rs_meta['name']}-{manifests.random_suffix(self._rng)}",
                "namespace": rs_meta["namespace"],
                "labels": dict(meta.get("labels") or {}),
                "ownerReferences": [manifests.owner_reference(rs)],
            },
            "spec": spec,
            "status": self._pending_status(spec, ip),
        }
        if meta.get("annotations"):
            pod["metadata"]["annotations"] = dict(meta["annotations"])
        created = self._store.create(PODS, pod)
        self._times[created["metadata"]["uid"]] = PodTimes(timeutil.now())
        return created

    def forget(self, uid: str) -> None:
        self._times.pop(uid, None)

    def ready_since(self, pod: Obj) -> float | None:
        times = self._times.get(pod["metadata"]["uid"])
        return times.ready if times else None

    @staticmethod
    def _pending_status(spec: Obj, ip: str) -> Obj:
        stamp = timeutil.rfc3339(timeutil.now())
        names = " ".join(c["name"] for c in spec["containers"])
        unready = f"containers with unready status: [{names}]"
        return {
            "phase": "Pending", "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}],
            "podIP": ip, "podIPs": [{"ip": ip}], "qosClass": "BestEffort", "startTime": stamp,
            "conditions": [
                _condition("PodScheduled", "True", stamp),
                _condition("Initialized", "True", stamp),
                _condition("ContainersReady", "False", stamp, "ContainersNotReady", unready),
                _condition("Ready", "False", stamp, "ContainersNotReady", unready),
            ],
            "containerStatuses": [{
                "name": c["name"], "image": c["image"], "imageID": "", "ready": False,
                "restartCount": 0, "started": False,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            } for c in spec["containers"]],
        }

    def step(self) -> None:
        """Advance every pod's containers to where the elapsed time puts them."""
        now = timeutil.now()
        for pod in self._store.list(PODS):
            times = self._times.setdefault(pod["metadata"]["uid"], PodTimes(now))
            age = now - times.created
            if age < self._config.pod_ready_seconds:
                continue
            statuses = [self._container_status(c, pod, age - self._config.pod_ready_seconds)
                        for c in pod["spec"]["containers"]]
            ready = all(s["ready"] for s in statuses)
            if ready and times.ready is None:
                times.ready = now
            updated = copy.deepcopy(pod)
            status = updated["status"]
            status["phase"] = "Running"
            status["containerStatuses"] = statuses
            stamp = timeutil.rfc3339(now)
            flag = "True" if ready else "False"
            unready = " ".join(s["name"] for s in statuses if not s["ready"])
            for i, cond in enumerate(status["conditions"]):
                if cond["type"] in ("Ready", "ContainersReady") and cond["status"] != flag:
                    status["conditions"][i] = _condition(
                        cond["type"], flag, stamp, None if ready else "ContainersNotReady",
                        f"containers with unready status: [{unready}]")
            self._store.replace(PODS, updated)

    def _container_status(self, container: Obj, pod: Obj, running_for: float) -> Obj:
        previous: Obj = next((s for s in pod["status"].get("containerStatuses") or []
                              if s["name"] == container["name"]), {})
        started_at = (previous.get("state", {}).get("running", {}).get("startedAt")
                      or timeutil.rfc3339(timeutil.now()))
        image = container["image"]
        repository = image.split("@")[0].rsplit(":", 1)[0] if ":" in image.rsplit(
            "/", 1)[-1] else image.split("@")[0]
        digest = hashlib.sha256(image.encode()).hexdigest()
        base: Obj = {"name": container["name"], "image": image,
                     "imageID": f"{repository}@sha256:{digest}",
                     "containerID": f"containerd://{pod['metadata']['uid'].replace('-', '')}"}
        if not self._config.behaviour_for(image).crash:
            return {**base, "ready": True, "restartCount": 0, "started": True,
                    "state": {"running": {"startedAt": started_at}}}
        restarts = 1 + math.floor(running_for / self._config.crash_restart_seconds)
        backoff = min(10 * 2 ** (restarts - 1), 300)
        stamp = timeutil.rfc3339(timeutil.now())
        last_state = previous.get("lastState") if previous.get("restartCount") == restarts else {
            "terminated": {"exitCode": 1, "reason": "Error", "startedAt": stamp,
                           "finishedAt": stamp, "containerID": base["containerID"]}}
        meta = pod["metadata"]
        return {
            **base, "ready": False, "restartCount": restarts, "started": False,
            "state": {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {timeutil.format_duration(backoff)} restarting failed "
                           f"container={container['name']} pod={meta['name']}_"
                           f"{meta['namespace']}({meta['uid']})"}},
            "lastState": last_state,
        }


def _condition(kind: str, status: str, stamp: str, reason: str | None = None,
               message: str = "") -> Obj:
    cond: Obj = {"type": kind, "status": status, "lastProbeTime": None,
                 "lastTransitionTime": stamp}
    if reason:
        cond["reason"] = reason
        cond["message"] = message
    return cond


def container_log(pod: Obj, container: str | None, crash: bool) -> str:
    """What ``kubectl logs`` shows: a few plausible lines, a panic for crashing images."""
    spec = next((c for c in pod["spec"]["containers"] if container in (None, c["name"])),
                pod["spec"]["containers"][0])
    port = next((p["containerPort"] for p in spec.get("ports") or []), 8080)
    lines = [f"starting {spec['name']} image={spec['image']}", "loading configuration"]
    if crash:
        lines += ["panic: runtime error: invalid memory address or nil pointer dereference",
                  "exit status 2"]
    else:
        lines += [f"listening on :{port}", "ready to serve traffic"]
    return "\n".join(lines) + "\n"


def is_ready(pod: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod.get("status", {}).get("conditions") or [])
