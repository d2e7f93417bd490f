"""Prometheus instant queries for analysis gates, with failures classified.

Built on prometheus-api-client's PrometheusConnect, which is synchronous
(requests): every call runs in a worker thread so the event loop keeps
serving Slack while a slow query is in flight. Matches the MetricsSource
port structurally; nothing here knows about deploys.

Failure kinds:
  bad_query   Prometheus rejected the expression (HTTP 400 "bad_data"), or
              the answer is not an instant vector or scalar. Retrying will
              not help; the message is Prometheus's own text.
  execution   the expression parsed but could not be evaluated (HTTP 422),
              e.g. many-to-many matching.
  unavailable Prometheus could not be reached or did not answer in time
              (connection refused, timeout, 5xx, not a Prometheus answer).
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

ErrorKind = Literal["bad_query", "unavailable", "execution"]
Sample = tuple[dict[str, str], float]

# PrometheusConnect only keeps "HTTP Status Code <n> (<repr of body bytes>)".
_STATUS = re.compile(r"^HTTP Status Code (\d+) \((.*)\)$", re.DOTALL)
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
_KIND_BY_ERROR_TYPE: dict[str, ErrorKind] = {"bad_data": "bad_query", "execution": "execution"}
_KIND_BY_STATUS: dict[int, ErrorKind] = {400: "bad_query", 422: "execution"}


class PrometheusError(Exception):
    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message

    def __str__(self) -> str:
        return self.message


class PrometheusClient:
    """`await PrometheusClient(url).query(promql)` → [(labels, value), ...]."""

    def __init__(self, url: str, *, timeout: float = 10.0,
                 headers: Mapping[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        # The library's default retries 3 times with 1 s backoff on 5xx,
        # which would hide an outage behind ~7 s of waiting per query. The
        # analysis loop already retries (consecutive_error_limit), so only a
        # dropped keep-alive connection is retried here, immediately.
        retry = Retry(total=1, connect=1, read=1, status=0, other=0, backoff_factor=0,
                      raise_on_status=False, allowed_methods=frozenset({"GET", "POST"}))
        self._conn = PrometheusConnect(url=self.url, headers=dict(headers) if headers else None,
                                       retry=retry, timeout=timeout)

    async def query(self, promql: str) -> list[Sample]:
        """An instant query: one (labels, value) per series; a scalar is ({}, value)."""
        try:
            # requests' timeout is per attempt (connect, then each read); the
            # outer deadline bounds the whole call, retry included. A thread
            # left behind ends when requests' own timeout fires.
            raw = await asyncio.wait_for(asyncio.to_thread(self._conn.custom_query, promql),
                                         timeout=self.timeout)
        except TimeoutError:
            raise PrometheusError(
                "unavailable", f"Prometheus at {self.url} did not answer within "
                f"{self.timeout:g}s") from None
        except PrometheusApiClientException as exc:
            raise _from_http_error(str(exc), self.url) from None
        except requests.JSONDecodeError:  # 200 with a body that is not JSON (a login page?)
            raise PrometheusError(
                "unavailable", f"{self.url} did not answer like a Prometheus API "
                "(the body is not JSON)") from None
        except requests.RequestException as exc:
            raise PrometheusError(
                "unavailable", f"cannot reach Prometheus at {self.url}: {_why(exc)}") from None
        except (KeyError, TypeError) as exc:  # 200 but not the API's envelope
            raise PrometheusError(
                "unavailable", f"{self.url} did not answer like a Prometheus API "
                f"({type(exc).__name__}: {exc})") from None
        return _samples(raw)

    def close(self) -> None:
        self._conn.close()


def _samples(raw: Any) -> list[Sample]:
    """custom_query returns data.result without resultType; tell the shapes apart."""
    if not isinstance(raw, list):
        raise PrometheusError("unavailable", f"unexpected query result {_short(repr(raw))}")
    if len(raw) == 2 and not isinstance(raw[0], dict):
        # Scalar [ts, "7"] (or a string result [ts, "text"], which is not a number).
        try:
            return [({}, _number(raw[1]))]
        except ValueError:
            raise PrometheusError("bad_query", "the query returned a string, not a "
                                  "number; use an instant vector") from None
    out: list[Sample] = []
    for item in raw:
        if not isinstance(item, dict):
            raise PrometheusError("unavailable", f"unexpected series {_short(repr(item))}")
        if "values" in item:
            raise PrometheusError("bad_query", "the query returned a range vector "
                                  "(matrix); use an instant vector, e.g. rate(x[1m])")
        try:
            labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
            out.append((labels, _number(item["value"][1])))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise PrometheusError("unavailable",
                                  f"unexpected series {_short(repr(item))}") from None
    return out


def _number(text: Any) -> float:
    # Prometheus spells special values "NaN", "+Inf", "-Inf"; float() reads all three.
    return float(text)


def _from_http_error(text: str, url: str) -> PrometheusError:
    match = _STATUS.match(text)
    if match is None:
        return PrometheusError("unavailable", f"Prometheus at {url}: {_short(text)}")
    status, body = int(match.group(1)), _body_text(match.group(2))
    error_type, error = _api_error(body)
    if error_type is None:  # not the API's error envelope: go by status alone
        kind = _KIND_BY_STATUS.get(status, "unavailable")
    else:  # "timeout", "canceled", "internal", ... are the server's trouble
        kind = _KIND_BY_ERROR_TYPE.get(error_type, "unavailable")
    if kind == "bad_query" and error:
        return PrometheusError(kind, error)  # Prometheus's own words, e.g. "1:5: parse error: ..."
    detail = error or _short(body) or "(empty body)"
    if kind == "execution":
        return PrometheusError(kind, _short(detail, 500))
    return PrometheusError(kind, f"Prometheus at {url} answered HTTP {status}: {detail}")


def _body_text(literal: str) -> str:
    try:
        body = ast.literal_eval(literal)  # the repr of the response bytes
    except (ValueError, SyntaxError):
        return literal
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)


def _api_error(body: str) -> tuple[str | None, str]:
    try:
        doc = json.loads(body)
    except ValueError:
        return None, ""
    if not isinstance(doc, dict) or doc.get("status") != "error":
        return None, ""
    return str(doc.get("errorType", "")), str(doc.get("error", ""))


def _why(exc: requests.RequestException) -> str:
    """The useful part of requests' nested message, e.g. "Connection refused"."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    errno = _ERRNO.search(str(exc))
    if errno:
        return errno.group(1).strip()
    return f"{type(exc).__name__}: {_short(str(exc))}"


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
