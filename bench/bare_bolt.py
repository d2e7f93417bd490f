"""The baseline for bench/ack_latency.py: a bare Bolt app whose only listener
acks, served by Bolt's own aiohttp adapter. Same libraries, no bot."""

from __future__ import annotations

import argparse
import re

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--slack-api", required=True)
    p.add_argument("--secret", required=True)
    args = p.parse_args()
    app = AsyncApp(client=AsyncWebClient(token="xoxb-bench", base_url=args.slack_api),
                   signing_secret=args.secret)

    @app.command(re.compile(r"^/"))
    async def noop(ack: AsyncAck) -> None:
        await ack()

    async def handle(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

    async def healthz(_r: web.Request) -> web.Response:
        return web.Response(text="ok")

    web_app = web.Application()
    web_app.router.add_post("/slack/events", handle)
    web_app.router.add_get("/readyz", healthz)
    web.run_app(web_app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
