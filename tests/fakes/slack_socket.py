"""Socket Mode on the fake Slack: `apps.connections.open` hands out a ws://
URL on the fake, and tests push envelopes (slash commands, interactivity,
events) down the WebSocket the way Slack does, then read the app's ack."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from aiohttp import WSMsgType, web


class SocketModeServer:
    def __init__(self) -> None:
        self.sockets: list[web.WebSocketResponse] = []
        self.connected = asyncio.Event()
        self.acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.opened_with: list[str] = []  # app tokens used for apps.connections.open
        self._ids = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/link/", self._handle)

    def open_connection(self, root_url: str, app_token: str) -> dict[str, Any]:
        self.opened_with.append(app_token)
        return {"ok": True, "url": root_url.replace("http://", "ws://") + "/link/?ticket=t1"}

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1,
                            "connection_info": {"app_id": "A0CHATOPS"}})
        self.connected.set()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                data = json.loads(msg.data)
                future = self.acks.get(str(data.get("envelope_id")))
                if future is not None and not future.done():
                    future.set_result(data)
        self.sockets.remove(ws)
        return ws

    async def send(self, envelope_type: str, payload: dict[str, Any],
                   timeout: float = 5.0) -> dict[str, Any]:
        """Send one envelope and return the app's acknowledgement."""
        await asyncio.wait_for(self.connected.wait(), timeout)
        envelope_id = f"env-{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.acks[envelope_id] = future
        await self.sockets[-1].send_json({
            "envelope_id": envelope_id, "type": envelope_type, "payload": payload,
            "accepts_response_payload": envelope_type != "events_api", "retry_attempt": 0,
            "retry_reason": ""})
        return await asyncio.wait_for(future, timeout)

    async def close(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
