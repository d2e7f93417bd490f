"""Assembles the sandbox: store, controllers, HTTP server, and test helpers."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import socket
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from sandbox import manifests, timeutil
from sandbox.config import ImageRule, SandboxConfig
from sandbox.controller import ControlLoop
from sandbox.defaults import prepare
from sandbox.errors import unauthorized
from sandbox.k8s_api import KubeApi, json_response
from sandbox.metrics_model import MetricsModel
from sandbox.prom_api import PrometheusApi
from sandbox.resources import DEPLOYMENTS, NAMESPACES, SERVICES, ResourceType
from sandbox.store import Obj, Store
from sandbox.tls import Certificates, mint

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Anonymous callers may read these, as on a real API server.
_PUBLIC_PATHS = ("/version", "/healthz", "/livez", "/readyz")


@dataclass
class RecordedRequest:
    """One request as the server saw it, for tests to assert on."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str
    time: float
    status: int = 0
    raw: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class RequestLog:
    entries: list[RecordedRequest] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, entry: RecordedRequest) -> None:
        self.entries.append(entry)
        self._changed.set()

    def matching(self, method: str | None = None, path: str | None = None) -> list[
            RecordedRequest]:
        """Requests with this method whose path contains ``path``."""
        return [e for e in self.entries
                if (method is None or e.method == method) and (path is None or path in e.path)]

    async def wait_for(self, method: str | None = None, path: str | None = None,
                       timeout: float = 5.0) -> RecordedRequest:
        async with asyncio.timeout(timeout):
            while True:
                found = self.matching(method, path)
                if found:
                    return found[-1]
                self._changed.clear()
                await self._changed.wait()


def _recorder(log: RequestLog) -> Any:
    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read() if request.can_read_body else b""
        # Bodies may be protobuf (kubectl create sends it); keep them printable.
        body = raw.decode("utf-8", errors="replace")
        entry = RecordedRequest(request.method, request.path, dict(request.query),
                                dict(request.headers), body, timeutil.now(), raw=raw)
        log.add(entry)
        response = await handler(request)
        entry.status = response.status
        return response

    return record


def _authenticator(token: str) -> Any:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, presented = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(),
                                                                     token.encode()):
                return json_response(unauthorized().status(), 401)
        elif request.path not in _PUBLIC_PATHS:
            return json_response(unauthorized().status(), 401)
        return await handler(request)

    return authenticate


class RunningSandbox:
    """A started sandbox: where it listens, and helpers to look inside."""

    def __init__(self, config: SandboxConfig, store: Store, control: ControlLoop,
                 metrics: MetricsModel, requests: RequestLog, certs: Certificates) -> None:
        self.config = config
        self.store = store
        self.control = control
        self.metrics = metrics
        self.requests = requests
        self.token = config.token
        self.ca_pem = certs.ca_pem
        self.url = ""
        self.prometheus_url = ""
        self._runners: list[web.AppRunner] = []
        self._tempdir = tempfile.TemporaryDirectory(prefix="sandbox-tls-")
        self._certs = certs

    async def _listen(self, app: web.Application, host: str, port: int,
                      tls: bool) -> str:
        runner = web.AppRunner(app, access_log=None, handler_cancellation=False)
        await runner.setup()
        self._runners.append(runner)
        # Bind ourselves so port=0 yields a known port before anyone connects.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        context = self._certs.server_context(Path(self._tempdir.name)) if tls else None
        await web.SockSite(runner, sock, ssl_context=context).start()
        scheme = "https" if tls else "http"
        return f"{scheme}://{host}:{sock.getsockname()[1]}"

    def write_kubeconfig(self, path: str | Path, namespace: str = "default",
                         context: str = "sandbox") -> Path:
        path = Path(path)
        ca_data = base64.b64encode(self.ca_pem).decode()
        doc = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": context, "cluster": {
                "server": self.url, "certificate-authority-data": ca_data}}],
            "users": [{"name": f"{context}-user", "user": {"token": self.token}}],
            "contexts": [{"name": context, "context": {"cluster": context,
                                                       "user": f"{context}-user",
                                                       "namespace": namespace}}],
            "preferences": {},
        }
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        path.chmod(0o600)
        return path

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        return self.store.get(rt, namespace, name)

    def deployment_image(self, namespace: str, name: str, container: str | None = None) -> str:
        containers = self.store.get(DEPLOYMENTS, namespace, name)["spec"]["template"]["spec"][
            "containers"]
        chosen = next((c for c in containers if container in (None, c["name"])), None)
        if chosen is None:
            raise KeyError(f"deployment {namespace}/{name} has no container {container!r}")
        return str(chosen["image"])

    def set_image_behaviour(self, pattern: str, **fields: Any) -> None:
        """Make matching images behave differently from now on (first match wins).

        Fields are ImageRule's: crash, error_ratio, latency_p50_seconds,
        latency_p99_seconds. Running pods pick the change up on the next tick.
        """
        self.config.images.insert(0, ImageRule(pattern=pattern, **fields))

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll the simulated cluster until ``predicate`` holds (raises TimeoutError)."""
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110 - the cluster has no event to await
                await asyncio.sleep(self.config.tick_seconds / 2)

    async def stop(self) -> None:
        await self.control.stop()
        self.store.close_watchers()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        self._tempdir.cleanup()

    async def __aenter__(self) -> RunningSandbox:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()


def _seed(store: Store, config: SandboxConfig) -> None:
    for ns in config.namespaces:
        obj = manifests.namespace(ns)
        prepare(NAMESPACES, obj, None)
        store.create(NAMESPACES, obj)
    for dep in config.deployments:
        obj = manifests.deployment(dep)
        prepare(DEPLOYMENTS, obj, None)
        store.create(DEPLOYMENTS, obj)
    for i, svc in enumerate(config.services):
        obj = manifests.service(svc)
        prepare(SERVICES, obj, None, f"10.96.100.{i + 10}")
        store.create(SERVICES, obj)


async def start_sandbox(config: SandboxConfig, host: str = "127.0.0.1", port: int = 0,
                        prometheus_port: int = 0, seed: int | None = None) -> RunningSandbox:
    """Start the API server (HTTPS), Prometheus (HTTP) and the controllers.

    ``port=0`` / ``prometheus_port=0`` pick free ports; ``seed`` makes pod names
    reproducible.
    """
    store = Store()
    _seed(store, config)
    control = ControlLoop(store, config, seed)
    metrics = MetricsModel(store, config, control.kubelet)
    control.on_tick(metrics.maybe_scrape)
    requests = RequestLog()
    sandbox = RunningSandbox(config, store, control, metrics, requests, mint(host))
    kube_app = web.Application(middlewares=[_recorder(requests), _authenticator(config.token)])
    kube_app.add_routes(KubeApi(store, config.server_version, control.kick,
                                config.behaviour_for).routes())
    prom_app = web.Application(middlewares=[_recorder(requests)])
    prom_app.add_routes(PrometheusApi(metrics).routes())
    try:
        sandbox.url = await sandbox._listen(kube_app, host, port, tls=True)
        sandbox.prometheus_url = await sandbox._listen(prom_app, host, prometheus_port,
                                                       tls=False)
    except BaseException:
        await sandbox.stop()
        raise
    control.tick()
    control.start()
    return sandbox
