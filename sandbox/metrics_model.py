"""Synthesises the metrics an instrumented app and kube-state-metrics would expose.

Each scrape adds the traffic since the previous one: every Service spreads its
request rate over the READY pods its selector matches; each pod's error ratio
and latency come from its image tag's behaviour. Counters only ever grow, so
``rate()`` over them is exact. Scraping follows each Service's endpoints, as
Prometheus' endpoints discovery does: a pod that is deleted or leaves the
Service's selector gets a staleness marker; a selected pod that turns unready
keeps its series, flat.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from sandbox import manifests, timeutil
from sandbox.config import Behaviour, SandboxConfig, image_tag
from sandbox.pods import Kubelet, is_ready
from sandbox.resources import DEPLOYMENTS, PODS, REPLICASETS, SERVICES
from sandbox.store import Obj, Store
from sandbox.tsdb import TSDB, LabelKey, Labels, label_key

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0, 1.5,
           2.0, 2.5, 5.0, 10.0)
_Z99 = NormalDist().inv_cdf(0.99)
_TRIM_EVERY = 100


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else format(bound, "g")


def latency_cdf(behaviour: Behaviour, bound: float) -> float:
    """Share of requests faster than ``bound``: log-normal through p50 and p99."""
    if math.isinf(bound):
        return 1.0
    mu = math.log(behaviour.latency_p50_seconds)
    sigma = max((math.log(behaviour.latency_p99_seconds) - mu) / _Z99, 1e-9)
    return NormalDist(mu, sigma).cdf(math.log(bound))


def mean_latency(behaviour: Behaviour) -> float:
    mu = math.log(behaviour.latency_p50_seconds)
    sigma = max((math.log(behaviour.latency_p99_seconds) - mu) / _Z99, 0.0)
    return math.exp(mu + sigma * sigma / 2)


class MetricsModel:
    def __init__(self, store: Store, config: SandboxConfig, kubelet: Kubelet) -> None:
        self.tsdb = TSDB()
        self._store = store
        self._config = config
        self._kubelet = kubelet
        self._counters: dict[LabelKey, tuple[Labels, float]] = {}
        self._gauges_seen: dict[LabelKey, Labels] = {}
        self._last: float | None = None
        self._scrapes = 0
        self._rates = {(s.namespace, s.name): s.requests_per_second for s in config.services}

    def maybe_scrape(self) -> None:
        now = timeutil.now()
        if self._last is None or now - self._last >= self._config.scrape_interval_seconds:
            self.scrape(now)

    def _add(self, labels: Labels, increment: float, seen: set[LabelKey]) -> None:
        key = label_key(labels)
        _, value = self._counters.get(key, (labels, 0.0))
        self._counters[key] = (labels, value + increment)
        seen.add(key)

    def scrape(self, now: float) -> None:
        elapsed = 0.0 if self._last is None else now - self._last
        self._last = now
        seen: set[LabelKey] = set()
        pods = self._store.list(PODS)
        rs_owner = {rs["metadata"]["uid"]: rs for rs in self._store.list(REPLICASETS)}
        for svc in self._store.list(SERVICES):
            self._scrape_service(svc, pods, rs_owner, elapsed, seen)
        gauges = self._gauges(pods)
        for key, (labels, value) in list(self._counters.items()):
            if key in seen:
                self.tsdb.append(labels, now, value)
            else:
                self.tsdb.mark_stale(labels, now)
                del self._counters[key]
        current = {label_key(labels): labels for labels, _ in gauges}
        for key, labels in self._gauges_seen.items():
            if key not in current:
                self.tsdb.mark_stale(labels, now)  # e.g. the pod was deleted
        self._gauges_seen = current
        for labels, value in gauges:
            self.tsdb.append(labels, now, value)
        self._scrapes += 1
        if self._scrapes % _TRIM_EVERY == 0:
            self.tsdb.trim(now - self._config.retention_seconds)

    def _scrape_service(self, svc: Obj, pods: list[Obj], rs_owner: dict[str, Obj],
                        elapsed: float, seen: set[LabelKey]) -> None:
        selector = svc["spec"].get("selector") or {}
        ns = svc["metadata"]["namespace"]
        if not selector:
            return
        matched = [p for p in pods if p["metadata"]["namespace"] == ns and all(
            (p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())]
        ready = [p for p in matched if is_ready(p)]
        total = self._rates.get((ns, svc["metadata"]["name"]))
        if total is None:
            total = self._config.requests_per_second_per_pod * len(ready)
        per_pod = total / len(ready) if ready else 0.0
        for pod in matched:
            image = pod["spec"]["containers"][0]["image"]
            rs = rs_owner.get(manifests.controller_uid(pod) or "")
            deployment = ""
            if rs is not None:
                owner = next((r for r in rs["metadata"].get("ownerReferences") or []
                              if r.get("kind") == DEPLOYMENTS.kind), None)
                deployment = owner["name"] if owner else ""
            base = {"namespace": ns, "service": svc["metadata"]["name"],
                    "deployment": deployment, "pod": pod["metadata"]["name"],
                    "version": image_tag(image)}
            probe = {"__name__": "http_requests_total", **base, "code": "200"}
            if not is_ready(pod) and label_key(probe) not in self._counters:
                continue  # A pod exposes request metrics only once it has served.
            # A fresh pod's counters start at zero, so its first scrape adds nothing.
            fresh = label_key(probe) not in self._counters
            requests = per_pod * elapsed if is_ready(pod) and not fresh else 0.0
            self._record_requests(base, self._config.behaviour_for(image), requests, seen)

    def _record_requests(self, base: Labels, behaviour: Behaviour, requests: float,
                         seen: set[LabelKey]) -> None:
        errors = requests * behaviour.error_ratio
        self._add({"__name__": "http_requests_total", **base, "code": "200"},
                  requests - errors, seen)
        self._add({"__name__": "http_requests_total", **base, "code": "500"}, errors, seen)
        for bound in (*BUCKETS, math.inf):
            self._add({"__name__": "http_request_duration_seconds_bucket", **base,
                       "le": _le(bound)}, requests * latency_cdf(behaviour, bound), seen)
        self._add({"__name__": "http_request_duration_seconds_sum", **base},
                  requests * mean_latency(behaviour), seen)
        self._add({"__name__": "http_request_duration_seconds_count", **base}, requests, seen)

    def _gauges(self, pods: list[Obj]) -> list[tuple[Labels, float]]:
        """kube-state-metrics style series, handy for runbooks."""
        out: list[tuple[Labels, float]] = []
        for d in self._store.list(DEPLOYMENTS):
            base = {"namespace": d["metadata"]["namespace"], "deployment": d["metadata"]["name"]}
            status = d.get("status") or {}
            out.append(({"__name__": "kube_deployment_spec_replicas", **base},
                        float(d["spec"].get("replicas", 1))))
            out.append(({"__name__": "kube_deployment_status_replicas_available", **base},
                        float(status.get("availableReplicas", 0))))
            out.append(({"__name__": "kube_deployment_status_replicas_unavailable", **base},
                        float(status.get("unavailableReplicas", 0))))
        for pod in pods:
            base = {"namespace": pod["metadata"]["namespace"], "pod": pod["metadata"]["name"]}
            ready = is_ready(pod)
            for flag in ("true", "false"):
                out.append(({"__name__": "kube_pod_status_ready", **base, "condition": flag},
                            1.0 if ready == (flag == "true") else 0.0))
            for cs in pod.get("status", {}).get("containerStatuses") or []:
                out.append(({"__name__": "kube_pod_container_status_restarts_total", **base,
                             "container": cs["name"]}, float(cs.get("restartCount", 0))))
        return out
