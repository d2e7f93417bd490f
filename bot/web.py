"""The bot's HTTP face (aiohttp): Slack's endpoint, health and readiness,
Prometheus metrics, and the routes domains add (webhooks, the JSON API)."""

from __future__ import annotations

import asyncio
import hmac
import logging
from base64 import b64decode
from collections.abc import Awaitable, Callable

from aiohttp import web
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST

from bot.app import BotApp

log = logging.getLogger("chatops.web")
tracer = trace.get_tracer("chatops.web")

BOT_KEY = web.AppKey("bot", BotApp)
MAX_BODY = 1024 * 1024  # Slack payloads and Alertmanager groups fit easily

RouteAdder = Callable[[web.Application, BotApp], None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_web_app(bot: BotApp, *, slack_handler: Handler | None = None,
                  extra_routes: list[RouteAdder] | None = None) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[BOT_KEY] = bot
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if slack_handler is not None:
        app.router.add_post("/slack/events", slack_handler)
    for add in extra_routes or []:
        add(app, bot)
    return app


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process answers. Nothing external is checked here, so a
    database outage does not get the pod restarted in a loop."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    bot = request.app[BOT_KEY]
    try:
        async with asyncio.timeout(3):
            await bot.db.ping()
            current = await bot.db.migrations_current()
    except Exception as exc:
        log.warning("not ready: database unreachable", extra={"error": type(exc).__name__})
        return web.json_response({"status": "unavailable", "database": "unreachable"},
                                 status=503)
    if not current:
        return web.json_response({"status": "unavailable", "database": "migrations pending"},
                                 status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    bot_metrics = request.app[BOT_KEY].metrics
    # Gauges read from the database (response metrics) are brought up to date
    # first: awaited, bounded, cached by their refresher; stale beats none.
    await bot_metrics.refresh()
    body = bot_metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def bearer_or_basic_ok(request: web.Request, secret: str | None) -> bool:
    """Accept the credentials Alertmanager's http_config can send: a bearer
    token, or basic auth whose password is the token. Constant-time compare."""
    if not secret:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.strip().encode(), secret.encode())
    if scheme.lower() == "basic":
        try:
            _user, _, password = b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(password.encode(), secret.encode())
    return False
