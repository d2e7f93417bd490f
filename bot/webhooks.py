"""POST /webhooks/alertmanager: Alertmanager's webhook, authenticated the
ways its http_config can send credentials (bearer token or basic auth).

Alertmanager retries 5xx and connection errors and drops everything else
after one try (429 included), so: 200 only once the notification is stored,
503 when it cannot be, 4xx only for requests that can never succeed."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from opentelemetry import trace
from pydantic import ValidationError

from bot.app import BotApp
from bot.web import BOT_KEY, bearer_or_basic_ok
from integrations.alertmanager import WebhookPayload

log = logging.getLogger("chatops.webhooks")
tracer = trace.get_tracer("chatops.webhooks")


def add_routes(app: web.Application, bot: BotApp) -> None:
    app.router.add_post("/webhooks/alertmanager", alertmanager)


def _answer(bot: BotApp, status: int, body: dict[str, object]) -> web.Response:
    bot.metrics.webhooks.labels("alertmanager", str(status)).inc()
    return web.json_response(body, status=status)


async def alertmanager(request: web.Request) -> web.Response:
    bot = request.app[BOT_KEY]
    token = bot.settings.webhook_token.get_secret_value() if bot.settings.webhook_token else None
    with tracer.start_as_current_span("webhook alertmanager") as span:
        if not bearer_or_basic_ok(request, token):
            return _answer(bot, 401, {"error": "missing or wrong credentials"})
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _answer(bot, 413, {"error": "body larger than 1 MiB; lower max_alerts"})
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _answer(bot, 400, {"error": f"invalid JSON: {exc}"})
        if not isinstance(data, dict):
            return _answer(bot, 400, {"error": "expected a JSON object"})
        try:
            payload = WebhookPayload.model_validate(data)
        except ValidationError as exc:
            reasons = [
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_url=False)[:5]
            ]
            return _answer(
                bot, 400, {"error": "not an Alertmanager v4 notification", "reasons": reasons}
            )
        span.set_attribute("chatops.alerts", len(payload.alerts))
        span.set_attribute("chatops.group_key", payload.group_key[:200])
        try:
            stored = await bot.alert_ingest.accept(payload, data)
        except Exception as exc:
            log.warning(
                "could not store an alert notification; asking for a retry",
                extra={"error": f"{type(exc).__name__}: {exc}"[:300]},
            )
            return _answer(bot, 503, {"error": "cannot store the notification now; retry"})
        return _answer(bot, 200, {"status": "stored" if stored else "duplicate"})
