"""PrometheusClient (the real prometheus-api-client) against the sandbox's
Prometheus API, and the analysis gate deciding on its series."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
from aiohttp import web

from bot.core.config import Analysis
from bot.deploys.analysis import AnalysisState, Verdict, measure, record, verdict
from integrations.prometheus import PrometheusClient, PrometheusError
from sandbox import DeploymentConfig, ImageRule, RunningSandbox, ServiceConfig, start_sandbox
from tests.sandbox.conftest import fast_config

GOOD, BAD = "1.0.0", "2.0.0-bad"
ERROR_RATIO = (
    'sum(rate(http_requests_total{service="shop",version="{{version}}",code=~"5.."}[30s]))'
    ' / sum(rate(http_requests_total{service="shop",version="{{version}}"}[30s]))')
GATE = Analysis.model_validate({"count": 2, "metrics": [
    {"name": "error-ratio", "query": ERROR_RATIO, "success": "< 0.05", "failure": ">= 0.1"}]})


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    config = fast_config(
        deployments=[
            DeploymentConfig(name="shop", labels={"app": "shop", "track": "stable"},
                             image=f"registry.local/shop:{GOOD}", replicas=2),
            DeploymentConfig(name="shop-canary", labels={"app": "shop", "track": "canary"},
                             image=f"registry.local/shop:{BAD}", replicas=1)],
        services=[ServiceConfig(name="shop", selector={"app": "shop"})],
        images=[ImageRule(pattern="*-bad", error_ratio=0.3)])
    running = await start_sandbox(config, seed=11)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def prom(sandbox: RunningSandbox) -> AsyncIterator[PrometheusClient]:
    client = PrometheusClient(sandbox.prometheus_url, timeout=5.0)
    # Wait until both versions have been scraped twice: rate() needs two samples.
    query = 'sum by (version) (rate(http_requests_total{service="shop"}[30s]))'
    deadline = time.monotonic() + 10
    while len(await client.query(query)) < 2:
        assert time.monotonic() < deadline, "the sandbox never served both versions"
        await asyncio.sleep(0.05)
    yield client
    client.close()


async def gate(client: PrometheusClient, version: str, analysis: Analysis = GATE) -> Verdict:
    """The rollout loop in miniature: measure, record, decide, until decided."""
    state = AnalysisState()
    variables = {"version": version, "service": "shop"}
    for _ in range(10):
        taken = await measure(analysis, client, variables, datetime.now(UTC), state)
        state = record(state, taken)
        decided = verdict(analysis, state)
        if decided.outcome != "running":
            return decided
        await asyncio.sleep(0.1)
    raise AssertionError(f"no verdict: {decided}")


async def test_healthy_version_passes(prom: PrometheusClient) -> None:
    result = await gate(prom, GOOD)
    assert result.outcome == "successful", result.reason
    assert result.reason.startswith("error-ratio 2/2 measured, values 0.002, 0.002")


async def test_bad_version_fails_naming_metric_and_value(prom: PrometheusClient) -> None:
    result = await gate(prom, BAD)
    assert result == Verdict("failed", "error-ratio failed 1 of 1 measurements (limit 0): "
                                       "0.3 >= 0.1 (failure condition)")


async def test_version_without_traffic_is_inconclusive(prom: PrometheusClient) -> None:
    # sum() over no series is an empty vector, not 0: on_empty decides.
    result = await gate(prom, "9.9.9")
    assert result.outcome == "inconclusive"
    assert "no data" in result.reason


async def test_query_shapes(prom: PrometheusClient) -> None:
    by_version = await prom.query(
        'sum by (version) (rate(http_requests_total{service="shop",code="500"}[30s]))'
        ' / sum by (version) (rate(http_requests_total{service="shop"}[30s]))')
    ratios = {labels["version"]: value for labels, value in by_version}
    assert ratios == {GOOD: pytest.approx(0.002), BAD: pytest.approx(0.3)}
    assert await prom.query("1 + 2 * 3") == [({}, 7.0)]
    [(_, nan)] = await prom.query("NaN")
    assert nan != nan
    assert await prom.query("-Inf") == [({}, float("-inf"))]
    assert await prom.query('http_requests_total{version="none"}') == []


async def test_two_series_are_an_error_measurement(prom: PrometheusClient) -> None:
    analysis = Analysis.model_validate({"metrics": [{
        "name": "by-version", "success": "< 0.05",
        "query": 'sum by (version) (rate(http_requests_total{service="shop"}[30s]))'}]})
    [taken] = await measure(analysis, prom, {}, datetime.now(UTC))
    assert taken.phase == "error" and "returned 2 series" in taken.message


@pytest.mark.parametrize(("promql", "kind", "says"), [
    ("sum(rate(http_requests_total[1m])", "bad_query", "parse error"),
    ("http_requests_total[30s]", "bad_query", "use an instant vector"),
    ('"a string"', "bad_query", "not a number"),
    ("http_requests_total / on(service) http_requests_total", "execution", "many-to-many"),
])
async def test_query_errors_are_classified(prom: PrometheusClient, promql: str, kind: str,
                                           says: str) -> None:
    with pytest.raises(PrometheusError) as failure:
        await prom.query(promql)
    assert failure.value.kind == kind and says in str(failure.value)


async def test_parse_error_is_prometheus_own_text(prom: PrometheusClient) -> None:
    with pytest.raises(PrometheusError) as failure:
        await prom.query("sum(rate(http_requests_total[1m])")
    assert str(failure.value) == "1:34: parse error: unexpected end of input, expected ')'"


async def test_unreachable_prometheus_is_unavailable() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(PrometheusError) as failure:
        await PrometheusClient(f"http://127.0.0.1:{port}", timeout=2).query("up")
    assert failure.value.kind == "unavailable"
    assert "Connection refused" in str(failure.value)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(handler: Handler) -> tuple[str, web.AppRunner]:
    app = web.Application()
    app.router.add_route("*", "/api/v1/query", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}", runner


async def test_slow_prometheus_times_out_without_blocking_the_loop() -> None:
    release = asyncio.Event()

    async def stall(_request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"status": "success", "data": {"resultType": "vector",
                                                                "result": []}})

    url, runner = await serve(stall)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beat = asyncio.create_task(ticker())
    started = time.monotonic()
    try:
        with pytest.raises(PrometheusError) as failure:
            await PrometheusClient(url, timeout=0.4).query("up")
        elapsed = time.monotonic() - started
    finally:
        beat.cancel()
        release.set()
        await runner.cleanup()
    assert failure.value.kind == "unavailable"
    assert 0.35 <= elapsed < 1.5
    assert ticks >= 20  # the loop kept running while the query waited


@pytest.mark.parametrize(("status", "body", "says"), [
    (503, '{"status":"error","errorType":"timeout","error":"query timed out in expression '
          'evaluation"}', "HTTP 503: query timed out"),
    (502, "<html>Bad Gateway</html>", "HTTP 502: <html>Bad Gateway</html>"),
    (404, "404 page not found", "HTTP 404"),
    (200, "<html>Sign in</html>", "did not answer like a Prometheus API"),
    (200, '{"status":"success"}', "did not answer like a Prometheus API"),
])
async def test_server_trouble_is_unavailable(status: int, body: str, says: str) -> None:
    async def answer(_request: web.Request) -> web.Response:
        return web.Response(status=status, text=body)

    url, runner = await serve(answer)
    try:
        with pytest.raises(PrometheusError) as failure:
            await PrometheusClient(url, timeout=2).query("up")
    finally:
        await runner.cleanup()
    assert failure.value.kind == "unavailable"
    assert says in str(failure.value)


async def test_headers_are_sent() -> None:
    async def answer(request: web.Request) -> web.Response:
        value = 1.0 if request.headers.get("Authorization") == "Bearer t0k3n" else 0.0
        return web.json_response({"status": "success", "data": {
            "resultType": "vector",
            "result": [{"metric": {"job": "x"}, "value": [1, str(value)]}]}})

    url, runner = await serve(answer)
    try:
        client = PrometheusClient(url, headers={"Authorization": "Bearer t0k3n"})
        assert await client.query("up") == [({"job": "x"}, 1.0)]
    finally:
        await runner.cleanup()
