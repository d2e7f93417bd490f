"""The object store: what etcd plus the API server's registry would hold.

Every write bumps one global, monotonic resourceVersion and is appended to a
bounded event log, so a watch can resume from the resourceVersion a list
returned (as kubectl's list-then-watch does) or be told 410 Gone when it asks
for history that has been dropped.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox import errors, timeutil
from sandbox.resources import DEPLOYMENTS, REPLICASETS, ResourceType

Obj = dict[str, Any]
Filter = Callable[[Obj], bool]

# Kinds whose metadata.generation tracks spec changes.
_GENERATION_KINDS = {DEPLOYMENTS.plural, REPLICASETS.plural}
# About what an API server keeps in its watch cache; older resumes get 410 Gone.
_LOG_SIZE = 5000


@dataclass
class Change:
    rv: int
    plural: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    old: Obj | None


@dataclass(eq=False)
class Watcher:
    plural: str
    namespace: str | None
    matches: Filter
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)

    def offer(self, change: Change) -> None:
        """Translate a change into what this watcher sees through its selectors."""
        if change.plural != self.plural:
            return
        if self.namespace is not None and change.obj["metadata"].get("namespace") != self.namespace:
            return
        now_in = change.type != "DELETED" and self.matches(change.obj)
        was_in = change.old is not None and self.matches(change.old)
        if change.type == "DELETED":
            kind = "DELETED" if self.matches(change.obj) else None
        elif now_in and was_in:
            kind = "MODIFIED"
        elif now_in:
            kind = "ADDED"
        elif was_in:
            # Leaving a selector looks like a deletion to the watcher, as on a real server.
            kind = "DELETED"
        else:
            kind = None
        if kind is not None:
            self.queue.put_nowait({"type": kind, "object": copy.deepcopy(change.obj)})


class Store:
    def __init__(self) -> None:
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._rv = 0
        self._log: deque[Change] = deque(maxlen=_LOG_SIZE)
        self._watchers: set[Watcher] = set()
        self._listeners: list[Callable[[Change], None]] = []

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def add_listener(self, listener: Callable[[Change], None]) -> None:
        """Controllers listen to react promptly instead of waiting for their next tick."""
        self._listeners.append(listener)

    def _bucket(self, rt: ResourceType) -> dict[tuple[str, str], Obj]:
        return self._objects.setdefault(rt.plural, {})

    @staticmethod
    def _key(rt: ResourceType, namespace: str | None, name: str) -> tuple[str, str]:
        return (namespace or "" if rt.namespaced else "", name)

    def _record(self, rt: ResourceType, kind: str, obj: Obj, old: Obj | None) -> None:
        change = Change(self._rv, rt.plural, kind, obj, old)
        self._log.append(change)
        for watcher in list(self._watchers):
            watcher.offer(change)
        for listener in self._listeners:
            listener(change)

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self._bucket(rt).get(self._key(rt, namespace, name))
        if obj is None:
            raise errors.not_found(rt, name)
        return copy.deepcopy(obj)

    def find(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        obj = self._bucket(rt).get(self._key(rt, namespace, name))
        return None if obj is None else copy.deepcopy(obj)

    def list(self, rt: ResourceType, namespace: str | None = None,
             matches: Filter | None = None) -> list[Obj]:
        return [
            copy.deepcopy(obj) for (ns, _), obj in sorted(self._bucket(rt).items())
            if (namespace is None or ns == namespace) and (matches is None or matches(obj))
        ]

    def create(self, rt: ResourceType, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        key = self._key(rt, meta.get("namespace"), meta["name"])
        bucket = self._bucket(rt)
        if key in bucket:
            raise errors.already_exists(rt, meta["name"])
        self._rv += 1
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = str(self._rv)
        meta["creationTimestamp"] = timeutil.rfc3339(timeutil.now())
        if rt.plural in _GENERATION_KINDS:
            meta["generation"] = 1
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        bucket[key] = obj
        self._record(rt, "ADDED", copy.deepcopy(obj), None)
        return copy.deepcopy(obj)

    def replace(self, rt: ResourceType, obj: Obj, expected_rv: str | None = None) -> Obj:
        """Store a new version; a stale ``expected_rv`` is a 409 Conflict."""
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        key = self._key(rt, meta.get("namespace"), meta["name"])
        bucket = self._bucket(rt)
        old = bucket.get(key)
        if old is None:
            raise errors.not_found(rt, meta["name"])
        old_meta = old["metadata"]
        if expected_rv and expected_rv != old_meta["resourceVersion"]:
            raise errors.conflict(rt, meta["name"])
        for immutable in ("uid", "creationTimestamp", "generation", "resourceVersion"):
            if immutable in old_meta:
                meta[immutable] = old_meta[immutable]
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        if obj == old:
            # A no-op write keeps its resourceVersion and wakes no watcher, as in etcd.
            return copy.deepcopy(old)
        if rt.plural in _GENERATION_KINDS and obj.get("spec") != old.get("spec"):
            meta["generation"] = old_meta.get("generation", 1) + 1
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        bucket[key] = obj
        self._record(rt, "MODIFIED", copy.deepcopy(obj), copy.deepcopy(old))
        return copy.deepcopy(obj)

    def delete(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        bucket = self._bucket(rt)
        obj = bucket.pop(self._key(rt, namespace, name), None)
        if obj is None:
            raise errors.not_found(rt, name)
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._record(rt, "DELETED", copy.deepcopy(obj), copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def watch(self, rt: ResourceType, namespace: str | None, matches: Filter,
              resource_version: str | None) -> Watcher:
        """Register a watcher and queue the events it must see first."""
        watcher = Watcher(rt.plural, namespace, matches)
        if resource_version in (None, "", "0"):
            for obj in self.list(rt, namespace, matches):
                watcher.queue.put_nowait({"type": "ADDED", "object": obj})
        else:
            try:
                since = int(str(resource_version))
            except ValueError as exc:
                raise errors.bad_request(
                    f"invalid resource version: {resource_version!r}") from exc
            oldest = self._log[0].rv if self._log else self._rv + 1
            if since < oldest - 1 and since < self._rv:
                raise errors.gone(f"too old resource version: {since} ({oldest - 1})")
            for change in self._log:
                if change.rv > since:
                    watcher.offer(change)
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def close_watchers(self) -> None:
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)
        self._watchers.clear()
