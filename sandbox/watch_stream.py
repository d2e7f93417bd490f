"""Streaming watch responses: one JSON event per line over a chunked response."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable

from aiohttp import web

from sandbox import errors, tables
from sandbox.resources import ResourceType
from sandbox.store import Obj, Store

# A real API server ends watches after a randomised 30-60 minutes.
_DEFAULT_TIMEOUT = 1800.0
# How often an idle watch checks that its client is still there.
_IDLE_CHECK = 0.5


async def stream_watch(request: web.Request, store: Store, rt: ResourceType,
                       namespace: str | None, matches: Callable[[Obj], bool]
                       ) -> web.StreamResponse:
    timeout = float(request.query.get("timeoutSeconds") or _DEFAULT_TIMEOUT * (
        1 + random.random()))
    as_table = tables.wants_table(request.headers.get("Accept", ""))
    response = web.StreamResponse(headers={"Content-Type": "application/json",
                                           "Cache-Control": "no-cache, private"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        watcher = store.watch(rt, namespace, matches, request.query.get("resourceVersion"))
    except errors.ApiError as exc:
        # Too-old resourceVersions arrive as an ERROR event, which reflectors expect.
        await response.write(json.dumps({"type": "ERROR", "object": exc.status()}).encode()
                             + b"\n")
        return response
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while (remaining := deadline - loop.time()) > 0:
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            try:
                event = await asyncio.wait_for(watcher.queue.get(), min(remaining, _IDLE_CHECK))
            except TimeoutError:
                continue
            if event is None:
                break
            if as_table:
                event["object"] = tables.table(rt, [event["object"]],
                                               event["object"]["metadata"]["resourceVersion"])
            await response.write(json.dumps(event).encode() + b"\n")
    except ConnectionResetError:
        pass  # The client went away; nothing to tell it.
    finally:
        store.unwatch(watcher)
    return response
