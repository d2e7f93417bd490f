"""Kubernetes REST endpoints: discovery, CRUD, patch, watch and subresources."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sandbox import defaults, discovery, errors, tables
from sandbox.config import Behaviour
from sandbox.patching import PATCH_TYPES
from sandbox.pods import container_log
from sandbox.protobuf import decode_object
from sandbox.resources import BY_ROUTE, DEPLOYMENTS, NAMESPACES, SERVICES, ResourceType
from sandbox.scale import apply_scale, scale_of
from sandbox.selectors import labels_match, parse_field_selector, parse_label_selector
from sandbox.store import Obj, Store
from sandbox.watch_stream import stream_watch

# Clients may create only what a user would create; the rest is made by controllers.
_CREATABLE = {DEPLOYMENTS.plural, SERVICES.plural, NAMESPACES.plural}


@dataclass
class Target:
    rt: ResourceType
    namespace: str | None
    name: str | None
    sub: str | None


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


class KubeApi:
    def __init__(self, store: Store, server_version: str, on_write: Callable[[], None],
                 behaviour: Callable[[str], Behaviour]) -> None:
        self._store = store
        self._behaviour = behaviour
        self._version = server_version
        self._on_write = on_write
        self._next_ip = 10

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/version", self.version), web.get("/healthz", self.healthy),
                web.get("/livez", self.healthy), web.get("/readyz", self.healthy),
                web.get("/openapi/v3", self.openapi_root),
                web.get("/openapi/v3/{path:.+}", self.openapi_group),
                web.route("*", "/api{tail:.*}", self.dispatch),
                web.route("*", "/apis{tail:.*}", self.dispatch)]

    async def version(self, _request: web.Request) -> web.Response:
        return json_response(discovery.version(self._version))

    async def openapi_root(self, _request: web.Request) -> web.Response:
        return json_response(discovery.openapi_v3_root(self._version.lstrip("v")))

    async def openapi_group(self, request: web.Request) -> web.Response:
        doc = discovery.openapi_v3_group(request.match_info["path"], self._version)
        if doc is None:
            return json_response(errors.ApiError(404, "NotFound", "404 page not found").status(),
                                 404)
        return json_response(doc)

    async def healthy(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except errors.ApiError as exc:
            return json_response(exc.status(), exc.code)

    def _discovery(self, parts: list[str], host: str) -> Obj | None:
        if parts == ["api"]:
            return discovery.core_versions(host)
        if parts == ["apis"]:
            return discovery.group_list()
        if len(parts) == 2 and parts[0] == "apis":
            return discovery.group(parts[1])
        if parts[0] == "api" and len(parts) == 2:
            return discovery.resource_list("", parts[1])
        if parts[0] == "apis" and len(parts) == 3:
            return discovery.resource_list(parts[1], parts[2])
        return None

    def _target(self, parts: list[str]) -> Target | None:
        if parts[0] == "api" and len(parts) > 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) > 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and (group, version, rest[2]) in BY_ROUTE:
            namespace, rest = rest[1], rest[2:]
        rt = BY_ROUTE.get((group, version, rest[0]))
        if rt is None or len(rest) > 3 or (namespace is not None and not rt.namespaced):
            return None
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in rt.subresources:
            return None
        return Target(rt, namespace, name, sub)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if request.method == "GET" and (found := self._discovery(parts, request.host)):
            return json_response(found)
        target = self._target(parts)
        if target is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested "
                                  "resource")
        method = request.method
        if target.namespace is not None and method == "POST":
            # Reads in a missing namespace are just empty; creates there are refused.
            self._store.get(NAMESPACES, None, target.namespace)
        if target.name is None:
            if method == "GET":
                return await self._list(request, target)
            if method == "POST":
                return await self._create(request, target)
        elif target.sub == "scale":
            return await self._scale(request, target)
        elif target.sub == "log" and method == "GET":
            pod = self._store.get(target.rt, target.namespace, str(target.name))
            container = request.query.get("container")
            image = next((c["image"] for c in pod["spec"]["containers"]
                          if container in (None, c["name"])), "")
            text = container_log(pod, container, self._behaviour(image).crash)
            return web.Response(text=text, content_type="text/plain")
        elif method == "GET":
            obj = self._store.get(target.rt, target.namespace, target.name)
            return self._render(request, target.rt, [obj], single=True)
        elif method in ("PUT", "PATCH"):
            return await self._write(request, target)
        elif method == "DELETE":
            return self._delete(target)
        raise errors.method_not_allowed(f"the server does not allow this method on the "
                                        f"requested resource ({method} {request.path})")

    def _render(self, request: web.Request, rt: ResourceType, items: list[Obj],
                single: bool = False) -> web.Response:
        accept = request.headers.get("Accept", "")
        if tables.wants_table(accept):
            include = request.query.get("includeObject", "PartialObjectMetadata")
            return json_response(tables.table(rt, items, self._store.resource_version, include))
        if single:
            return json_response(items[0])
        return json_response({"kind": rt.list_kind, "apiVersion": rt.api_version,
                              "metadata": {"resourceVersion": self._store.resource_version},
                              "items": items})

    def _filter(self, request: web.Request) -> Callable[[Obj], bool]:
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(request.query.get("fieldSelector"))
        return lambda o: labels_match(labels, o["metadata"].get("labels")) and fields(o)

    async def _list(self, request: web.Request, target: Target) -> web.StreamResponse:
        matches = self._filter(request)
        if request.query.get("watch", "").lower() in ("true", "1"):
            return await stream_watch(request, self._store, target.rt, target.namespace,
                                      matches)
        items = self._store.list(target.rt, target.namespace, matches)
        return self._render(request, target.rt, items)

    @staticmethod
    async def _body(request: web.Request) -> Any:
        content_type = request.headers.get("Content-Type", "application/json")
        raw = await request.read()
        if "protobuf" in content_type:
            return decode_object(raw)
        if "cbor" in content_type:
            raise errors.ApiError(415, "UnsupportedMediaType",
                                  "the body of the request was in an unknown format - "
                                  "accepted media types include: application/json, "
                                  f"application/vnd.kubernetes.protobuf (got {content_type!r})")
        try:
            return json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise errors.bad_request(f"the request body is not valid JSON: {exc}") from exc

    def _cluster_ip(self) -> str:
        self._next_ip += 1
        return f"10.96.{self._next_ip // 250}.{self._next_ip % 250}"

    async def _create(self, request: web.Request, target: Target) -> web.Response:
        rt = target.rt
        if rt.plural not in _CREATABLE:
            raise errors.method_not_allowed(f"{rt.plural} are created by the sandbox's own "
                                            "controllers only")
        obj = await self._body(request)
        if not isinstance(obj, dict):
            raise errors.bad_request("the request body must be a JSON object")
        meta = obj.setdefault("metadata", {})
        if target.namespace is not None:
            if meta.get("namespace", target.namespace) != target.namespace:
                raise errors.bad_request("the namespace of the provided object does not match "
                                         "the namespace sent on the request")
            meta["namespace"] = target.namespace
        obj.pop("status", None)
        for server_owned in ("uid", "resourceVersion", "creationTimestamp", "generation"):
            meta.pop(server_owned, None)
        defaults.prepare(rt, obj, None, self._cluster_ip())
        if request.query.get("dryRun"):
            return json_response(obj, 201)
        created = self._store.create(rt, obj)
        self._on_write()
        return json_response(created, 201)

    async def _write(self, request: web.Request, target: Target) -> web.Response:
        rt, name = target.rt, str(target.name)
        current = self._store.get(rt, target.namespace, name)
        if request.method == "PATCH":
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            patcher = PATCH_TYPES.get(content_type)
            if patcher is None:
                # Server-side apply (apply-patch+yaml) is among what is not served.
                raise errors.unsupported_media_type(content_type)
            body = await self._body(request)
            wanted = patcher(current, body)
            expected_rv = (body or {}).get("metadata", {}).get("resourceVersion") if isinstance(
                body, dict) else None
        else:
            wanted = body = await self._body(request)
            if not isinstance(wanted, dict):
                raise errors.bad_request("the request body must be a JSON object")
            expected_rv = (wanted.get("metadata") or {}).get("resourceVersion")
        if not isinstance(wanted, dict) or (wanted.get("metadata") or {}).get("name") != name:
            raise errors.bad_request("the name of the object does not match the name on the URL")
        wanted["metadata"]["namespace"] = current["metadata"].get("namespace")
        if target.sub == "status":
            current["status"] = wanted.get("status")
            wanted = current
        else:
            # Writes to the main resource never change status, as on a real server.
            wanted["status"] = copy.deepcopy(current.get("status"))
            if wanted["status"] is None:
                wanted.pop("status")
        defaults.prepare(rt, wanted, current)
        if request.query.get("dryRun"):
            return json_response(wanted)
        stored = self._store.replace(rt, wanted, expected_rv)
        self._on_write()
        return json_response(stored)

    def _delete(self, target: Target) -> web.Response:
        rt, name = target.rt, str(target.name)
        deleted = self._store.delete(rt, target.namespace, name)
        if rt is NAMESPACES:
            for other in BY_ROUTE.values():
                if other.namespaced:
                    for obj in self._store.list(other, name):
                        self._store.delete(other, name, obj["metadata"]["name"])
        self._on_write()
        return json_response(deleted)

    async def _scale(self, request: web.Request, target: Target) -> web.Response:
        rt, name = target.rt, str(target.name)
        current = self._store.get(rt, target.namespace, name)
        if request.method == "GET":
            return json_response(scale_of(current))
        body = await self._body(request)
        if request.method == "PATCH":
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            patcher = PATCH_TYPES.get(content_type)
            if patcher is None:
                raise errors.unsupported_media_type(content_type)
            body = patcher(scale_of(current), body)
        elif request.method != "PUT":
            raise errors.method_not_allowed(f"{request.method} is not allowed on scale")
        expected_rv = (body.get("metadata") or {}).get("resourceVersion") if isinstance(
            body, dict) else None
        if expected_rv and expected_rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        updated = apply_scale(rt, current, body)
        stored = self._store.replace(rt, updated)
        self._on_write()
        return json_response(scale_of(stored))
