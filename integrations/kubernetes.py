"""Kubernetes through the official client, behind an async face.

The `kubernetes` client is synchronous, so every call runs in a worker thread
and the event loop never waits on the network. Objects come back as the API
server's own JSON (camelCase dicts, exactly what `kubectl get -o json` shows):
responses are read raw (`_preload_content=False`) and json-decoded, never
round-tripped through the client's models, which would rename fields, drop
unknown ones and reformat timestamps.

Every failure becomes a `KubeError` carrying the Kubernetes Status reason;
the client's own exceptions never reach callers. `KubeClient` and
`KubeClusters` match the `Cluster` / `ClusterProvider` protocols of the
deploy domain structurally; nothing here imports the bot.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any, Literal

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException, OpenApiException
from kubernetes.config.config_exception import ConfigException
from pydantic import ValidationError

KubeObject = dict[str, Any]
PatchType = Literal["strategic", "merge", "json"]

# Passed as `_content_type` on every write: the client's own default for PATCH
# is json-patch (first JSON type in its list), silently downgraded to strategic
# merge when the body is not a list. Creates send no Content-Type at all.
_PATCH_CONTENT_TYPES: dict[str, str] = {
    "strategic": "application/strategic-merge-patch+json",
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}
_JSON = "application/json"

# Connections that never opened are retried once (nothing reached the server);
# read errors are retried only for GET/HEAD, so a write is never sent twice.
_RETRIES = urllib3.Retry(total=None, connect=1, read=1, other=0, redirect=0,
                         allowed_methods=frozenset({"GET", "HEAD"}), backoff_factor=0.1)

# Status reasons by HTTP code, for error bodies that are not a Status object.
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            405: "MethodNotAllowed", 409: "Conflict", 410: "Gone", 415: "UnsupportedMediaType",
            422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
            503: "ServiceUnavailable", 504: "Timeout"}


class KubeError(Exception):
    """A Kubernetes call that failed; `reason` is the Status reason.

    `status` is the HTTP code, or None when no response arrived
    (reason "Unavailable": connection refused, TLS failure, timeout) or the
    request was refused before sending (reason "Invalid").
    """

    def __init__(self, status: int | None, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}" if status is None
                         else f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def _from_api_exception(exc: ApiException) -> KubeError:
    status = int(exc.status or 0)
    if status == 0:
        # The client reports TLS failures as a pseudo-response with status 0.
        return KubeError(None, "Unavailable", str(exc.reason or "no response"))
    reason = _REASONS.get(status, "Unknown")
    message = str(exc.reason or "")
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        reason = str(body.get("reason") or reason)
        message = str(body.get("message") or message)
    elif exc.body:
        message = str(exc.body)[:500]
    return KubeError(status, reason, message)


class KubeClient:
    """One cluster (one kube context): the calls the deploy domain makes."""

    def __init__(self, api_client: client.ApiClient, *,
                 request_timeout: tuple[float, float] = (5.0, 30.0)) -> None:
        self._api = api_client
        self._apps = client.AppsV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._timeout = request_timeout  # (connect, read) seconds

    async def _raw(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        """Run one client call in a worker thread and return the response body."""

        def blocking() -> bytes:
            response = call(*args, _preload_content=False, _request_timeout=self._timeout,
                            **kwargs)
            try:
                return bytes(response.data)  # reading the body is blocking I/O too
            finally:
                response.release_conn()

        try:
            return await asyncio.to_thread(blocking)
        except ApiException as exc:
            error = _from_api_exception(exc)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # MaxRetryError only wraps what went wrong on the last attempt.
            cause = getattr(exc, "reason", None) or exc
            error = KubeError(None, "Unavailable", f"cannot reach the API server: "
                              f"{type(cause).__name__}: {cause}")
        except (ValidationError, OpenApiException) as exc:
            # The client validates bodies against its models before sending.
            error = KubeError(None, "Invalid", str(exc))
        # Raised outside the handlers so no __context__ links it to the client's
        # exception, whose traceback holds the worker thread's frames (and with them
        # the HTTP response) for as long as a caller keeps the error.
        raise error

    async def _object(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> KubeObject:
        raw = await self._raw(call, *args, **kwargs)
        try:
            decoded = json.loads(raw)
        except ValueError as exc:
            raise KubeError(None, "InternalError", f"response is not JSON: {exc}") from None
        if not isinstance(decoded, dict):
            raise KubeError(None, "InternalError", "response is not a JSON object")
        return decoded

    async def _items(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[
            KubeObject]:
        listed = await self._object(call, *args, **kwargs)
        return list(listed.get("items") or [])

    async def _maybe(self, call: Callable[..., Any], *args: Any) -> KubeObject | None:
        try:
            return await self._object(call, *args)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def get_deployment(self, namespace: str, name: str) -> KubeObject | None:
        return await self._maybe(self._apps.read_namespaced_deployment, name, namespace)

    async def create_deployment(self, namespace: str, body: KubeObject) -> KubeObject:
        # Creates ignore `_content_type`, so the header goes in directly (a fresh
        # dict per call: the client adds its own headers to the one it is given).
        return await self._object(self._apps.create_namespaced_deployment, namespace, body,
                                  _headers={"Content-Type": _JSON})

    async def patch_deployment(self, namespace: str, name: str, patch: Any,
                               patch_type: PatchType = "strategic") -> KubeObject:
        return await self._object(self._apps.patch_namespaced_deployment, name, namespace,
                                  patch, _content_type=_content_type(patch_type, patch))

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> KubeObject:
        """Set replicas through the `scale` subresource (as `kubectl scale` does),
        so only the replica count is written; returns the autoscaling/v1 Scale."""
        return await self._object(self._apps.patch_namespaced_deployment_scale, name,
                                  namespace, {"spec": {"replicas": replicas}},
                                  _content_type=_PATCH_CONTENT_TYPES["merge"])

    async def list_replicasets(self, namespace: str, label_selector: str) -> list[KubeObject]:
        return await self._items(self._apps.list_namespaced_replica_set, namespace,
                                 label_selector=label_selector)

    async def get_service(self, namespace: str, name: str) -> KubeObject | None:
        return await self._maybe(self._core.read_namespaced_service, name, namespace)

    async def create_service(self, namespace: str, body: KubeObject) -> KubeObject:
        return await self._object(self._core.create_namespaced_service, namespace, body,
                                  _headers={"Content-Type": _JSON})

    async def patch_service(self, namespace: str, name: str, patch: Any,
                            patch_type: PatchType = "merge") -> KubeObject:
        return await self._object(self._core.patch_namespaced_service, name, namespace,
                                  patch, _content_type=_content_type(patch_type, patch))

    async def list_pods(self, namespace: str, label_selector: str) -> list[KubeObject]:
        return await self._items(self._core.list_namespaced_pod, namespace,
                                 label_selector=label_selector)

    async def pod_log(self, namespace: str, name: str, container: str | None = None,
                      tail_lines: int = 50) -> str:
        raw = await self._raw(self._core.read_namespaced_pod_log, name, namespace,
                              container=container, tail_lines=tail_lines)
        return raw.decode("utf-8", errors="replace")

    async def close(self) -> None:
        await asyncio.to_thread(self._api.close)


def _content_type(patch_type: PatchType, patch: Any) -> str:
    content_type = _PATCH_CONTENT_TYPES.get(patch_type)
    if content_type is None:
        raise KubeError(None, "Invalid", f"unknown patch type {patch_type!r}")
    if patch_type == "json" and not isinstance(patch, list):
        # The client would quietly resend a non-list body as a strategic merge patch.
        raise KubeError(None, "Invalid", "a JSON patch must be a list of operations")
    return content_type


def _api_client(kubeconfig: str | None, context: str | None) -> client.ApiClient:
    """An ApiClient for one context; retries are set before the client builds
    its connection pool, which reads them only once."""
    configuration = client.Configuration()
    configuration.retries = _RETRIES
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            if context is not None:
                # Sending a named context's traffic to whatever cluster we run in
                # could deploy to the wrong environment.
                raise KubeError(None, "Unavailable", f"context {context!r} needs a kubeconfig; "
                                "only the in-cluster service account is configured")
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
            return client.ApiClient(configuration)
        made: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration)
        return made
    except (ConfigException, OSError, ValueError) as exc:
        where = kubeconfig or "the default kubeconfig"
        raise KubeError(None, "Unavailable",
                        f"cannot load {where} (context {context!r}): {exc}") from None


class KubeClusters:
    """A KubeClient per kube context, made on first use and then reused.

    `kubeconfig=None` means the in-cluster service account when running in a
    pod (KUBERNETES_SERVICE_HOST is set), else the default kubeconfig
    ($KUBECONFIG or ~/.kube/config). Context None is the current context.
    """

    def __init__(self, kubeconfig: str | None = None, *,
                 request_timeout: tuple[float, float] = (5.0, 30.0)) -> None:
        self._kubeconfig = kubeconfig
        self._timeout = request_timeout
        self._clients: dict[str | None, KubeClient] = {}

    def for_context(self, context: str | None) -> KubeClient:
        """The client for `context`; raises KubeError("Unavailable") when the
        kubeconfig or context cannot be loaded. Loading reads a small file once
        per context, so it is done inline."""
        found = self._clients.get(context)
        if found is None:
            api = _api_client(self._kubeconfig, context)
            found = self._clients[context] = KubeClient(api, request_timeout=self._timeout)
        return found

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for kube in clients:
            await kube.close()
