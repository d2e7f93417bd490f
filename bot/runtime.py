"""Assembles a running bot: the BotApp, where the outbox delivers, the Slack
transports, and the HTTP server. `chatops serve`, `chatops shell --listen`
and the integration tests all start the bot through this one path."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiohttp import web

from bot.app import BotApp
from bot.console import ConsoleDeliverer
from bot.core.delivery import Deliverer
from bot.slack.app import build_bolt_app, http_handler, start_socket_mode
from bot.slack.delivery import SlackDeliverer
from bot.slack.directory import SlackGroupDirectory
from bot.web import build_web_app
from integrations.slack import SlackPoster

log = logging.getLogger("chatops.runtime")


@dataclass
class Runtime:
    bot: BotApp
    web_app: web.Application
    runner: web.AppRunner | None = None
    url: str | None = None
    socket_mode: bool = False
    notes: list[str] = field(default_factory=list)

    async def start(self, host: str | None = "127.0.0.1", port: int = 8080,
                    *, workers: bool = True) -> None:
        await self.bot.start(workers=workers)
        if host is not None:
            self.runner = web.AppRunner(self.web_app, access_log=None)
            await self.runner.setup()
            site = web.TCPSite(self.runner, host, port)
            await site.start()
            sockets = self.runner.addresses
            actual = sockets[0][1] if sockets else port
            self.url = f"http://{host}:{actual}"
            log.info("listening", extra={"url": self.url})
        if self.socket_mode:
            await start_socket_mode(self.bot, build_bolt_app(self.bot))

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        await self.bot.stop()


def build_runtime(bot: BotApp, *, deliverer: Deliverer | None = None) -> Runtime:
    s = bot.settings
    notes: list[str] = []
    token = s.slack_bot_token.get_secret_value() if s.slack_bot_token else None
    if token:
        poster = SlackPoster(token, s.slack_api_url)
        bot.slack_poster = poster
        bot.incidents.channels = poster
        bot.postmortems.emails = poster.user_email  # Jira accounts of action-item owners
        bot.authorizer.groups = SlackGroupDirectory(poster)
        bot.escalator.groups = bot.authorizer.groups
    if deliverer is None:
        if token:
            deliverer = SlackDeliverer(poster)
        else:
            deliverer = ConsoleDeliverer()
            notes.append("SLACK_BOT_TOKEN is not set: messages are printed, not sent to Slack")
    bot.use_deliverer(deliverer)
    slack_handler = None
    if token and s.slack_signing_secret:
        slack_handler = http_handler(build_bolt_app(bot))
    elif token:
        notes.append("SLACK_SIGNING_SECRET is not set: POST /slack/events is disabled")
    from bot import api, webhooks

    web_app = build_web_app(bot, slack_handler=slack_handler,
                            extra_routes=[webhooks.add_routes, api.add_routes])
    runtime = Runtime(bot, web_app, socket_mode=bool(token and s.slack_app_token), notes=notes)
    for note in notes:
        log.warning(note)
    return runtime
