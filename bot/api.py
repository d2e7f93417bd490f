"""The read-only JSON API for dashboards and status pages (bearer token)."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from bot.app import BotApp
from bot.incidents.models import Incident, IncidentEvent
from bot.web import BOT_KEY


def add_routes(app: web.Application, bot: BotApp) -> None:
    app.router.add_get("/api/v1/incidents", list_incidents)
    app.router.add_get("/api/v1/incidents/{ref}", get_incident)


def _authorized(request: web.Request) -> bool:
    s = request.app[BOT_KEY].settings
    secret = s.api_token or s.webhook_token
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if secret is None or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), secret.get_secret_value().encode())


def incident_json(inc: Incident, events: list[IncidentEvent]) -> dict[str, Any]:
    def ts(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": inc.ref,
        "number": inc.id,
        "title": inc.title,
        "service": inc.service,
        "severity": inc.severity,
        "status": inc.status,
        "source": inc.source,
        "commander": inc.commander,
        "responders": inc.responders,
        "channel": inc.channel,
        "labels": inc.labels,
        "links": inc.links,
        "summary": inc.summary,
        "detected_at": ts(inc.detected_at),
        "acknowledged_at": ts(inc.acknowledged_at),
        "mitigated_at": ts(inc.mitigated_at),
        "resolved_at": ts(inc.resolved_at),
        "timeline": [
            {"at": ts(e.at), "kind": e.kind, "actor": e.actor, "text": e.text} for e in events
        ],
    }


async def list_incidents(request: web.Request) -> web.Response:
    if not _authorized(request):
        return web.json_response({"error": "bearer token required"}, status=401)
    status = request.query.get("status", "all")
    if status not in ("open", "all"):
        return web.json_response({"error": "status must be open or all"}, status=400)
    bot: BotApp = request.app[BOT_KEY]
    incidents = await bot.incidents.list(open_only=status == "open", limit=100)
    out = [incident_json(i, list(await bot.incidents.events_of(i.id or 0))) for i in incidents]
    return web.json_response({"incidents": out})


async def get_incident(request: web.Request) -> web.Response:
    if not _authorized(request):
        return web.json_response({"error": "bearer token required"}, status=401)
    bot: BotApp = request.app[BOT_KEY]
    try:
        inc = await bot.incidents.get(request.match_info["ref"])
    except Exception as exc:
        message = getattr(exc, "message", str(exc))
        return web.json_response({"error": message}, status=404)
    return web.json_response(incident_json(inc, list(await bot.incidents.events_of(inc.id or 0))))
