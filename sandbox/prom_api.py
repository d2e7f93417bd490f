"""Prometheus HTTP API (``/api/v1/query``, ``query_range``, labels, series).

Served over plain HTTP on its own port (like an in-cluster Prometheus), apart
from the TLS Kubernetes API; no authentication.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from aiohttp import web

from sandbox import timeutil
from sandbox.metrics_model import MetricsModel
from sandbox.promql_ast import EvalError, PromQLError, ValueType
from sandbox.promql_eval import Evaluator
from sandbox.promql_parser import parse
from sandbox.promql_values import RangeSeries, Sample, Value

_MAX_POINTS = 11000


class BadData(Exception):
    pass


def format_value(value: float) -> str:
    """Go's strconv.FormatFloat(v, 'f', -1, 64), which Prometheus uses for values."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _ts(t: float) -> float:
    return round(t, 3)


def parse_time(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return timeutil.parse_rfc3339(text)
    except ValueError as exc:
        raise BadData(f'invalid parameter "{name}": cannot parse "{text}" to a valid '
                      "timestamp") from exc


def parse_step(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return timeutil.parse_duration(text)
    except ValueError as exc:
        raise BadData(f'invalid parameter "step": cannot parse "{text}" to a valid '
                      "duration") from exc


def _success(data: Any) -> web.Response:
    return web.Response(text=json.dumps({"status": "success", "data": data}),
                        content_type="application/json")


def _error(kind: str, message: str, status: int) -> web.Response:
    body = {"status": "error", "errorType": kind, "error": message}
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def _vector_json(samples: list[Sample], at: float) -> list[dict[str, Any]]:
    return [{"metric": s.labels, "value": [_ts(at), format_value(s.value)]} for s in samples]


def _matrix_json(series: list[RangeSeries]) -> list[dict[str, Any]]:
    return [{"metric": s.labels, "values": [[_ts(t), format_value(v)] for t, v in s.points]}
            for s in series]


class PrometheusApi:
    def __init__(self, metrics: MetricsModel) -> None:
        self._metrics = metrics
        self._eval = Evaluator(metrics.tsdb)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.route("*", "/api/v1/query", self.query),
            web.route("*", "/api/v1/query_range", self.query_range),
            web.get("/api/v1/labels", self.labels),
            web.get("/api/v1/label/{name}/values", self.label_values),
            web.route("*", "/api/v1/series", self.series),
            web.get("/api/v1/status/buildinfo", self.buildinfo),
            web.get("/-/healthy", self.healthy),
            web.get("/-/ready", self.healthy),
            web.get("/", self.healthy),
        ]

    @staticmethod
    async def _params(request: web.Request) -> dict[str, list[str]]:
        params: dict[str, list[str]] = {}
        for key, value in request.query.items():
            params.setdefault(key, []).append(value)
        if request.method == "POST":
            form = await request.post()
            for key, field in form.items():
                params.setdefault(key, []).append(str(field))
        return params

    async def healthy(self, _request: web.Request) -> web.Response:
        return web.Response(text="Prometheus Server is Healthy.\n")

    async def buildinfo(self, _request: web.Request) -> web.Response:
        return _success({"version": "2.53.0", "revision": "sandbox", "branch": "HEAD",
                         "buildUser": "sandbox", "buildDate": "20240101-00:00:00",
                         "goVersion": "go1.22.4"})

    async def query(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        try:
            text = _required(params, "query")
            at = parse_time(params["time"][0], "time") if "time" in params else timeutil.now()
            node = parse(text)
            value = self._eval.instant(node, at)
        except (BadData, PromQLError) as exc:
            return _error("bad_data", str(exc), 400)
        except EvalError as exc:
            return _error("execution", str(exc), 422)
        return _success(_instant_json(node.type, value, at))

    async def query_range(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        try:
            text = _required(params, "query")
            start = parse_time(_required(params, "start"), "start")
            end = parse_time(_required(params, "end"), "end")
            step = parse_step(_required(params, "step"))
            if end < start:
                raise BadData('invalid parameter "end": end timestamp must not be before '
                              "start time")
            if step <= 0:
                raise BadData("zero or negative query resolution step widths are not accepted."
                              " Try a positive integer")
            if (end - start) / step > _MAX_POINTS:
                raise BadData("exceeded maximum resolution of 11,000 points per timeseries. "
                              "Try decreasing the query resolution (?step=XX)")
            node = parse(text)
            if node.type not in (ValueType.SCALAR, ValueType.VECTOR):
                raise BadData(f"invalid expression type \"{node.type.description}\" for range "
                              "query, must be Scalar or instant Vector")
            series = self._eval.range(node, start, end, step)
        except (BadData, PromQLError) as exc:
            return _error("bad_data", str(exc), 400)
        except EvalError as exc:
            return _error("execution", str(exc), 422)
        return _success({"resultType": "matrix", "result": _matrix_json(series)})

    async def labels(self, _request: web.Request) -> web.Response:
        names = {k for s in self._metrics.tsdb.candidates(None) for k in s.labels}
        return _success(sorted(names))

    async def label_values(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        values = {s.labels[name] for s in self._metrics.tsdb.candidates(None) if name in s.labels}
        return _success(sorted(values))

    async def series(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        selectors = params.get("match[]") or []
        if not selectors:
            return _error("bad_data", "no match[] parameter provided", 400)
        found: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        try:
            for selector in selectors:
                node = parse(selector)
                if node.type != ValueType.VECTOR:
                    raise BadData("match[] must be a series selector")
                result = self._eval.instant(node, timeutil.now())
                for sample in result if isinstance(result, list) else []:
                    if isinstance(sample, Sample):
                        found[tuple(sorted(sample.labels.items()))] = sample.labels
        except (BadData, PromQLError) as exc:
            return _error("bad_data", str(exc), 400)
        return _success(list(found.values()))


def _required(params: dict[str, list[str]], name: str) -> str:
    values = params.get(name)
    if not values or not values[0]:
        raise BadData(f'invalid parameter "{name}": parameter is missing')
    return values[0]


def _instant_json(kind: ValueType, value: Value, at: float) -> dict[str, Any]:
    if kind == ValueType.SCALAR:
        assert isinstance(value, float)
        return {"resultType": "scalar", "result": [_ts(at), format_value(value)]}
    if kind == ValueType.STRING:
        return {"resultType": "string", "result": [_ts(at), str(value)]}
    if kind == ValueType.MATRIX:
        return {"resultType": "matrix", "result": _matrix_json(value)}  # type: ignore[arg-type]
    return {"resultType": "vector", "result": _vector_json(value, at)}  # type: ignore[arg-type]
