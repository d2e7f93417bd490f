"""prometheus-api-client against the sandbox's synthesised series."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
import requests
from kubernetes import client
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException

from sandbox import DeploymentConfig, RunningSandbox, SandboxConfig, ServiceConfig, start_sandbox
from sandbox.resources import PODS
from tests.conftest import eventually
from tests.sandbox.conftest import call, fast_config, new_client

ERROR_RATIO = (
    'sum by (version) (rate(http_requests_total{service="web",code=~"5.."}[500ms]))'
    ' / sum by (version) (rate(http_requests_total{service="web"}[500ms]))'
)
P99 = ('histogram_quantile(0.99, sum by (le, version) '
       '(rate(http_request_duration_seconds_bucket{service="web"}[500ms])))')


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return fast_config(
        deployments=[
            DeploymentConfig(name="web", labels={"app": "web", "track": "stable"},
                             image="registry.local/web:1.0.0", replicas=3),
            DeploymentConfig(name="web-canary", labels={"app": "web", "track": "canary"},
                             image="registry.local/web:2.0.0-bad", replicas=1),
        ],
        services=[ServiceConfig(name="web", selector={"app": "web"})])


async def wait_for_history(sandbox: RunningSandbox, pods: int, window: float = 0.5) -> None:
    """Wait until every pod's request counter began more than ``window`` ago and
    was scraped at least twice within it, so a rate over it sees steady
    traffic. A fixed sleep is not enough when the event loop runs late."""

    def enough() -> bool:
        now = time.time()
        series = [
            s
            for s in sandbox.metrics.tsdb.candidates("http_requests_total")
            if s.labels.get("code") == "200"
        ]
        return len(series) >= pods and all(
            s.times[0] < now - window - 0.1 and sum(t > now - window for t in s.times) >= 2
            for s in series
        )

    await eventually(enough, timeout=10)


@pytest.fixture
async def prom(sandbox: RunningSandbox) -> AsyncIterator[PrometheusConnect]:
    await wait_for_history(sandbox, pods=4)
    yield PrometheusConnect(url=sandbox.prometheus_url, disable_ssl=True)


def _by_version(result: list[dict[str, object]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in result:
        metric, value = item["metric"], item["value"]
        assert isinstance(metric, dict) and isinstance(value, list)
        out[metric["version"]] = float(value[1])
    return out


async def test_error_ratio_per_version(prom: PrometheusConnect) -> None:
    assert await asyncio.to_thread(prom.check_prometheus_connection)
    ratios = _by_version(await asyncio.to_thread(prom.custom_query, ERROR_RATIO))
    assert ratios.keys() == {"1.0.0", "2.0.0-bad"}
    assert ratios["1.0.0"] == pytest.approx(0.002, rel=1e-6)
    assert ratios["2.0.0-bad"] == pytest.approx(0.25, rel=1e-6)


async def test_latency_quantile_per_version(prom: PrometheusConnect) -> None:
    p99 = _by_version(await asyncio.to_thread(prom.custom_query, P99))
    # Linear interpolation inside the 75-100 ms and 750 ms-1 s buckets.
    assert 0.075 <= p99["1.0.0"] <= 0.1
    assert 0.75 <= p99["2.0.0-bad"] <= 1.0


async def test_traffic_follows_ready_pods(prom: PrometheusConnect,
                                          sandbox: RunningSandbox) -> None:
    rates = await asyncio.to_thread(
        prom.custom_query, 'sum by (deployment) (rate(http_requests_total{service="web"}[500ms]))')
    by_deployment = {r["metric"]["deployment"]: float(r["value"][1]) for r in rates}
    assert by_deployment["web"] == pytest.approx(30.0, rel=0.05)
    assert by_deployment["web-canary"] == pytest.approx(10.0, rel=0.05)
    pods = {p["metadata"]["name"] for p in sandbox.store.list(PODS)}
    series = await asyncio.to_thread(prom.custom_query, 'http_requests_total{code="200"}')
    assert {s["metric"]["pod"] for s in series} == pods


async def test_range_query(prom: PrometheusConnect, sandbox: RunningSandbox) -> None:
    # The client rounds start and end to whole seconds: pick a whole second whose
    # one-second rate window lies entirely after traffic began.
    began = min(s.times[0] for s in sandbox.metrics.tsdb.candidates("http_requests_total"))
    end = max(math.ceil(began + 1.1), math.floor(time.time()))
    await asyncio.sleep(max(0.0, end + 0.1 - time.time()))
    result = await asyncio.to_thread(
        prom.custom_query_range, 'sum(rate(http_requests_total{service="web"}[1s]))',
        datetime.fromtimestamp(end - 2), datetime.fromtimestamp(end), "0.5")
    assert len(result) == 1 and result[0]["metric"] == {}
    times = [point[0] for point in result[0]["values"]]
    assert times[-1] == end and all(b - a == 0.5 for a, b in itertools.pairwise(times))
    assert float(result[0]["values"][-1][1]) == pytest.approx(40.0, rel=0.05)


async def test_parse_error_is_bad_data(prom: PrometheusConnect) -> None:
    with pytest.raises(PrometheusApiClientException) as failure:
        await asyncio.to_thread(prom.custom_query, "sum(rate(http_requests_total[1m])")
    assert "400" in str(failure.value) and "bad_data" in str(failure.value)
    response = await asyncio.to_thread(
        requests.get, f"{prom.url}/api/v1/query",
        params={"query": "rate(http_requests_total[5m:1m])"}, timeout=5)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert "subqueries" in body["error"]


async def test_post_form_and_scalar_result(sandbox: RunningSandbox) -> None:
    response = await asyncio.to_thread(
        requests.post, f"{sandbox.prometheus_url}/api/v1/query",
        data={"query": "1 + 2 * 3", "time": "1700000000"}, timeout=5)
    assert response.json() == {"status": "success", "data": {
        "resultType": "scalar", "result": [1700000000, "7"]}}


async def test_crash_looping_pods_serve_nothing() -> None:
    cfg = fast_config(deployments=[DeploymentConfig(name="web", image="web:1-crash",
                                                    replicas=2)])
    running = await start_sandbox(cfg)
    try:
        prom = PrometheusConnect(url=running.prometheus_url, disable_ssl=True)

        async def restarted_twice() -> bool:
            restarts = await asyncio.to_thread(
                prom.custom_query, "sum(kube_pod_container_status_restarts_total) > 0")
            return bool(restarts) and float(restarts[0]["value"][1]) >= 2

        await eventually(restarted_twice, timeout=10, interval=0.1)
        traffic = await asyncio.to_thread(prom.custom_query, "http_requests_total")
        assert traffic == []
        absent = await asyncio.to_thread(prom.custom_query,
                                         'absent(http_requests_total{service="web"})')
        assert absent == [{"metric": {"service": "web"}, "value": absent[0]["value"]}]
    finally:
        await running.stop()


async def test_blue_green_switch_moves_traffic(tmp_path: Path) -> None:
    cfg = fast_config(
        deployments=[
            DeploymentConfig(name="web-blue", labels={"app": "web", "track": "blue"},
                             image="web:1.0.0", replicas=2),
            DeploymentConfig(name="web-green", labels={"app": "web", "track": "green"},
                             image="web:2.0.0", replicas=2),
        ],
        services=[ServiceConfig(name="web", selector={"app": "web", "track": "blue"})])
    running = await start_sandbox(cfg)
    try:
        core = client.CoreV1Api(new_client(running.write_kubeconfig(tmp_path / "kc")))
        prom = PrometheusConnect(url=running.prometheus_url, disable_ssl=True)
        query = 'sum by (version) (rate(http_requests_total{service="web"}[300ms]))'

        async def rates() -> dict[str, float]:
            return {r["metric"]["version"]: float(r["value"][1])
                    for r in await asyncio.to_thread(prom.custom_query, query)}

        await wait_for_history(running, pods=2, window=0.3)
        assert await rates() == {"1.0.0": pytest.approx(20.0, rel=0.05)}
        await call(core.patch_namespaced_service, "web", "default",
                   {"spec": {"selector": {"app": "web", "track": "green"}}})
        # Scraping follows the Service's endpoints: blue's series go stale and
        # green's take all the traffic once a whole window has passed.
        async def switched() -> bool:
            return await rates() == {"2.0.0": pytest.approx(20.0, rel=0.05)}

        await eventually(switched, timeout=10, interval=0.1)
    finally:
        await running.stop()
