"""The real Prometheus and Alertmanager, started as subprocesses for tests.

    require_binaries()                       # skip locally / fail under CI=true if missing
    async with Alertmanager(bot_webhook_url, token="t0k") as am:
        await am.post_alerts([{"labels": {"alertname": "CheckoutDown", "service": "checkout"}}])
        ...                                  # the bot receives a version-4 webhook
        await am.resolve({"alertname": "CheckoutDown", "service": "checkout"})

    async with MetricExporter() as exporter, Alertmanager(url) as am, Prometheus(
        scrape_target=exporter.target, rules=RULES, alertmanager_url=am.url
    ) as prom:
        exporter.set("chatops_test_up", 0, labels={"service": "checkout"})

The binaries are Debian's (`prometheus`, `prometheus-alertmanager`), installed by
scripts/test-services.sh. Each instance listens on a free 127.0.0.1 port, keeps its
data, configuration and log in a temporary directory that is removed on exit, and runs
with HA gossip off. Timings are tuned for tests: Alertmanager flushes a group at once
(group_wait 0s) and re-flushes changes every second; Prometheus scrapes and evaluates
every second and re-sends firing alerts every second.

group_wait 0s means a new group is sent as soon as its first alert is in, possibly
before the other alerts of the same POST are: expect 1 alert now and the rest one
group_interval later, or pass group_wait="250ms" to get them in one notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import pytest
import yaml
from aiohttp import web

ALERTMANAGER_BINARY = "prometheus-alertmanager"  # upstream calls it `alertmanager`
PROMETHEUS_BINARY = "prometheus"
IN_CI = os.environ.get("CI", "").lower() == "true"
START_TIMEOUT = 20.0
_LOG_TAIL = 6000  # characters of a process log quoted in failure messages


def _which(name: str, *fallbacks: str) -> str | None:
    for candidate in (name, *fallbacks):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def alertmanager_binary() -> str | None:
    return _which(ALERTMANAGER_BINARY, "alertmanager")


def prometheus_binary() -> str | None:
    return _which(PROMETHEUS_BINARY)


def require_binaries(alertmanager: bool = True, prometheus: bool = True) -> None:
    """Skip the test when a binary is missing locally; fail it under CI=true."""
    missing = []
    if alertmanager and alertmanager_binary() is None:
        missing.append(ALERTMANAGER_BINARY)
    if prometheus and prometheus_binary() is None:
        missing.append(PROMETHEUS_BINARY)
    if not missing:
        return
    message = f"{', '.join(missing)} not found on PATH; install with scripts/test-services.sh"
    if IN_CI:
        pytest.fail(f"required under CI=true: {message}")
    pytest.skip(message)


def free_port() -> int:
    """A port that was free a moment ago (the child binds it; a race is retried)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_rfc3339(offset: float = 0.0) -> str:
    return rfc3339(datetime.now(UTC) + timedelta(seconds=offset))


def _label_key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


class ProcessFailed(RuntimeError):
    """A Prometheus/Alertmanager process misbehaved; the message quotes its log."""


class _ManagedProcess:
    """A child process with its log in a file, a readiness probe and a polite stop."""

    name = "process"

    def __init__(self, workdir: Path | str | None) -> None:
        # Without a workdir, a temporary one is made by start() and removed by stop().
        self._own_dir = workdir is None
        self.dir = Path(workdir) if workdir is not None else Path()
        self.port = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def logs(self) -> str:
        """Everything the process wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _fail(self, message: str) -> ProcessFailed:
        log = self.logs()
        problems = [line for line in log.splitlines()
                    if "level=error" in line or "level=warn" in line][-20:]
        text = f"{self.name} {self.url}: {message}"
        if problems:
            text += "\n--- errors and warnings ---\n" + "\n".join(problems)
        return ProcessFailed(f"{text}\n--- tail of {self.log_path} ---\n{log[-_LOG_TAIL:]}")

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _write_config(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        if self._own_dir:
            self.dir = Path(tempfile.mkdtemp(prefix=f"chatops-{self.name}-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            for attempt in range(3):
                self.port = free_port()
                self._write_config()
                await self._spawn()
                try:
                    await self._wait_ready()
                    return
                except ProcessFailed:
                    address_taken = "address already in use" in self.logs()
                    await self._terminate()
                    if not address_taken or attempt == 2:
                        raise
        except BaseException:
            await self.stop()  # a ProcessFailed already quotes the log
            raise

    async def _spawn(self) -> None:
        argv = self._argv()
        self._log = self.log_path.open("ab")
        self._log.write(f"$ {' '.join(argv)}\n".encode())
        self._log.flush()
        self._proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=self._log,
            stderr=asyncio.subprocess.STDOUT, cwd=self.dir,
        )

    async def _wait_ready(self) -> None:
        assert self._proc is not None and self._session is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        last = "no answer yet"
        while loop.time() < deadline:
            if self._proc.returncode is not None:
                raise self._fail(f"exited with status {self._proc.returncode} while starting")
            try:
                async with self._session.get(f"{self.url}/-/ready") as resp:
                    if resp.status == 200:
                        return
                    last = f"/-/ready answered {resp.status}"
            except aiohttp.ClientError as exc:
                last = f"/-/ready: {exc!r}"
            await asyncio.sleep(0.05)
        raise self._fail(f"not ready within {START_TIMEOUT}s ({last})")

    async def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def stop(self) -> None:
        await self._terminate()
        await self._close_session()
        if self._own_dir and self.dir != Path():
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = Path()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        """JSON in, JSON out; a non-2xx answer or a dead process raises with the log."""
        if self._session is None or self._proc is None:
            raise self._fail("not running")
        if self._proc.returncode is not None:
            raise self._fail(f"exited with status {self._proc.returncode}")
        try:
            async with self._session.request(method, f"{self.url}{path}", json=body) as resp:
                text = await resp.text()
                if resp.status // 100 != 2:
                    raise self._fail(f"{method} {path} answered {resp.status}: {text}")
                return await resp.json(content_type=None) if text.strip() else None
        except aiohttp.ClientError as exc:
            raise self._fail(f"{method} {path} failed: {exc!r}") from exc


class Alertmanager(_ManagedProcess):
    """`prometheus-alertmanager` routing every alert to one webhook receiver.

    Auth on the webhook: `token` sends `Authorization: Bearer <token>`; `basic_auth`
    (user, password) sends Basic instead; neither sends no Authorization header.
    """

    name = "alertmanager"
    receiver = "chatops"

    def __init__(
        self,
        webhook_url: str,
        *,
        token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        group_by: Sequence[str] = ("alertname", "service"),
        group_wait: str = "0s",
        group_interval: str = "1s",
        repeat_interval: str = "1h",
        resolve_timeout: str = "5m",
        send_resolved: bool = True,
        max_alerts: int = 0,
        workdir: Path | str | None = None,
    ) -> None:
        super().__init__(workdir)
        self.webhook_url = webhook_url
        self.token = token
        self.basic_auth = basic_auth
        self.group_by = list(group_by)
        self.group_wait = group_wait
        self.group_interval = group_interval
        self.repeat_interval = repeat_interval
        self.resolve_timeout = resolve_timeout
        self.send_resolved = send_resolved
        self.max_alerts = max_alerts
        self._posted: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}

    @property
    def config_path(self) -> Path:
        return self.dir / "alertmanager.yml"

    def config(self) -> dict[str, Any]:
        """The alertmanager.yml written at start (override to customise)."""
        http_config: dict[str, Any] = {}
        if self.basic_auth is not None:
            user, password = self.basic_auth
            http_config["basic_auth"] = {"username": user, "password": password}
        elif self.token is not None:
            http_config["authorization"] = {"type": "Bearer", "credentials": self.token}
        webhook: dict[str, Any] = {
            "url": self.webhook_url, "send_resolved": self.send_resolved,
            "max_alerts": self.max_alerts,
        }
        if http_config:
            webhook["http_config"] = http_config
        return {
            "global": {"resolve_timeout": self.resolve_timeout},
            "route": {
                "receiver": self.receiver, "group_by": self.group_by,
                "group_wait": self.group_wait, "group_interval": self.group_interval,
                "repeat_interval": self.repeat_interval,
            },
            "receivers": [{"name": self.receiver, "webhook_configs": [webhook]}],
        }

    def _write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    def _argv(self) -> list[str]:
        binary = alertmanager_binary()
        if binary is None:
            raise self._fail(f"{ALERTMANAGER_BINARY} not found; run scripts/test-services.sh")
        return [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url={self.url}",
            "--cluster.listen-address=",  # empty: no HA gossip, no port 9094
            "--log.level=debug",
        ]

    async def post_alerts(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        """POST /api/v2/alerts. Each alert needs `labels`; `annotations` default to {},
        `startsAt` to now and `generatorURL` to a test URL; no `endsAt` means firing
        (Alertmanager then resolves it itself after resolve_timeout)."""
        body = []
        for alert in alerts:
            labels = dict(alert["labels"])
            full: dict[str, Any] = {
                "labels": labels,
                "annotations": dict(alert.get("annotations") or {}),
                "startsAt": alert.get("startsAt") or now_rfc3339(),
                "generatorURL": alert.get("generatorURL") or "http://chatops.test/alerts",
            }
            if alert.get("endsAt"):
                full["endsAt"] = alert["endsAt"]
            body.append(full)
            self._posted[_label_key(labels)] = full
        await self._request("POST", "/api/v2/alerts", body)

    async def resolve(self, labels: Mapping[str, str], *more: Mapping[str, str]) -> None:
        """Resolve alerts (matched by their exact label sets) in one POST: same labels,
        annotations and startsAt as posted, endsAt = now."""
        ends = now_rfc3339()
        body = []
        for label_set in (labels, *more):
            posted = self._posted.get(_label_key(label_set))
            alert = dict(posted) if posted else {
                "labels": dict(label_set), "annotations": {},
                "startsAt": now_rfc3339(-1.0), "generatorURL": "http://chatops.test/alerts",
            }
            alert["endsAt"] = ends
            body.append(alert)
        await self._request("POST", "/api/v2/alerts", body)

    async def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts (query parameters as keyword arguments, e.g. active="true")."""
        query = urlencode(filters)
        result = await self._request("GET", "/api/v2/alerts" + (f"?{query}" if query else ""))
        return list(result or [])

    async def groups(self) -> list[dict[str, Any]]:
        """GET /api/v2/alerts/groups."""
        return list(await self._request("GET", "/api/v2/alerts/groups") or [])


class Prometheus(_ManagedProcess):
    """`prometheus` scraping one target every second, evaluating the caller's rules
    every second and sending alerts to one Alertmanager (re-sent every second).

    /-/ready answers within ~0.1 s, but the first scrape comes ~5 s later (target
    discovery is batched every 5 s and no flag changes that): share one instance
    across tests, or wait with query() before measuring anything."""

    name = "prometheus"

    def __init__(
        self,
        scrape_target: str,
        rules: str,
        alertmanager_url: str,
        *,
        job: str = "chatops-test",
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        resend_delay: str = "1s",
        workdir: Path | str | None = None,
    ) -> None:
        super().__init__(workdir)
        self.scrape_target = scrape_target
        self.rules = rules
        self.alertmanager_url = alertmanager_url
        self.job = job
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.resend_delay = resend_delay
    @property
    def config_path(self) -> Path:
        return self.dir / "prometheus.yml"

    @property
    def rules_path(self) -> Path:
        return self.dir / "rules.yml"

    def config(self) -> dict[str, Any]:
        am = urlsplit(self.alertmanager_url)
        alertmanager: dict[str, Any] = {
            "scheme": am.scheme or "http",
            "static_configs": [{"targets": [am.netloc]}],
            "api_version": "v2",
        }
        if am.path.strip("/"):
            alertmanager["path_prefix"] = am.path
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "rule_files": [str(self.rules_path)],
            "alerting": {"alertmanagers": [alertmanager]},
            "scrape_configs": [
                {"job_name": self.job, "static_configs": [{"targets": [self.scrape_target]}]},
            ],
        }

    def _write_config(self) -> None:
        self.rules_path.write_text(self.rules)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    def _argv(self) -> list[str]:
        binary = prometheus_binary()
        if binary is None:
            raise self._fail(f"{PROMETHEUS_BINARY} not found; run scripts/test-services.sh")
        return [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url={self.url}",
            f"--rules.alert.resend-delay={self.resend_delay}",
            "--log.level=debug",
        ]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the `result` list of /api/v1/query."""
        body = await self._request("GET", f"/api/v1/query?query={quote(expr)}")
        return list(body["data"]["result"])

    async def alerts(self) -> list[dict[str, Any]]:
        """Prometheus's own view: GET /api/v1/alerts (pending and firing)."""
        body = await self._request("GET", "/api/v1/alerts")
        return list(body["data"]["alerts"])


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class MetricExporter:
    """A tiny /metrics endpoint with gauges the test sets.

    `status` other than 200 makes /metrics answer that status (the scrape fails and
    Prometheus's `up` for the target becomes 0).
    """

    def __init__(self) -> None:
        self._gauges: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self._help: dict[str, str] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.status = 200
        self.scrapes = 0

    @property
    def target(self) -> str:
        """host:port, for a Prometheus scrape config."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def set(
        self, name: str, value: float, labels: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> None:
        self._gauges.setdefault(name, {})[_label_key(labels or {})] = float(value)
        if description is not None:
            self._help[name] = description

    def remove(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """Drop one series (labels given) or the whole metric (labels None)."""
        if labels is None:
            self._gauges.pop(name, None)
        else:
            self._gauges.get(name, {}).pop(_label_key(labels), None)

    def render(self) -> str:
        lines = []
        for name, series in sorted(self._gauges.items()):
            lines.append(f"# HELP {name} {self._help.get(name, name)}")
            lines.append(f"# TYPE {name} gauge")
            for key, value in sorted(series.items()):
                labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in key)
                lines.append(f"{name}{{{labels}}} {_format_value(value)}" if labels
                             else f"{name} {_format_value(value)}")
        return "\n".join(lines) + "\n"

    async def _metrics(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        if self.status != 200:
            return web.Response(status=self.status, text="exporter told to fail\n")
        return web.Response(body=self.render().encode(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
