"""One entry point for every transport: text in, Reply out.

Measures, traces and logs each command; turns user-facing errors into
replies; audits refusals; never lets a traceback reach a person.
"""

from __future__ import annotations

import logging
import secrets
import time

from opentelemetry import trace

from bot.core import audit
from bot.core.chat import ActionContext, CommandContext, Reply, reply
from bot.core.clock import Clock
from bot.core.db import Database
from bot.core.errors import ChatOpsError, Refused
from bot.core.grammar import UsageError
from bot.core.metrics import BotMetrics
from bot.core.registry import CommandRegistry

log = logging.getLogger("chatops.dispatch")
tracer = trace.get_tracer("chatops.dispatch")


class Dispatcher:
    def __init__(
        self, registry: CommandRegistry, db: Database, clock: Clock, metrics: BotMetrics
    ) -> None:
        self.registry = registry
        self.db = db
        self.clock = clock
        self.metrics = metrics

    async def dispatch(self, ctx: CommandContext) -> Reply:
        started = time.perf_counter()
        name = ctx.command if ctx.command in self.registry.commands else "unknown"
        with tracer.start_as_current_span(f"command {name}") as span:
            span.set_attribute("chatops.command", ctx.command)
            span.set_attribute("chatops.user", ctx.user_id)
            span.set_attribute("chatops.transport", ctx.transport)
            outcome, result = await self._run(ctx)
            span.set_attribute("chatops.outcome", outcome)
        elapsed = time.perf_counter() - started
        self.metrics.commands.labels(name, outcome).inc()
        self.metrics.command_seconds.labels(name).observe(elapsed)
        log.info("command handled", extra={
            "command": ctx.command, "user": ctx.user_id, "channel": ctx.channel_id,
            "transport": ctx.transport, "outcome": outcome, "ms": round(elapsed * 1000, 1),
        })
        return result

    async def _run(self, ctx: CommandContext) -> tuple[str, Reply]:
        try:
            form, parsed = self.registry.resolve(ctx.command, ctx.text)
            return "ok", await form.handler(ctx, parsed)
        except UsageError as exc:
            text = exc.message + (f"\nUsage:\n{exc.usage}" if exc.usage else "")
            return "usage", reply(text)
        except Refused as exc:
            await self._audit_refusal(exc, ctx.user_id, ctx.channel_id, ctx.transport, ctx.text)
            return "refused", reply(f":no_entry: {exc.message}")
        except ChatOpsError as exc:
            return "error", reply(f":warning: {exc.message}")
        except Exception:
            ref = secrets.token_hex(4)
            log.exception("command failed", extra={"command": ctx.command, "ref": ref})
            return "crash", reply(
                f":boom: Something went wrong handling {ctx.command} (reference {ref}). "
                "It is logged; nothing further was done.")

    async def press(self, actx: ActionContext) -> Reply | None:
        handler = self.registry.actions.get(actx.action_id)
        if handler is None:
            self.metrics.actions.labels("unknown", "unknown").inc()
            return reply("That button is no longer handled by this bot.")
        with tracer.start_as_current_span(f"action {actx.action_id}"):
            try:
                result = await handler(actx)
                outcome = "ok"
            except Refused as exc:
                await self._audit_refusal(exc, actx.user_id, actx.channel_id, actx.transport,
                                          f"button {actx.action_id} {actx.value}")
                result, outcome = reply(f":no_entry: {exc.message}"), "refused"
            except ChatOpsError as exc:
                result, outcome = reply(f":warning: {exc.message}"), "error"
            except Exception:
                ref = secrets.token_hex(4)
                log.exception("action failed", extra={"action": actx.action_id, "ref": ref})
                result, outcome = reply(f":boom: That did not work (reference {ref})."), "crash"
        self.metrics.actions.labels(actx.action_id, outcome).inc()
        return result

    async def _audit_refusal(
        self, exc: Refused, user: str, channel: str, transport: str, text: str
    ) -> None:
        async with self.db.transaction() as session:
            await audit.record(
                session, at=self.clock.now(), actor=user, action=exc.action, outcome="refused",
                target=exc.target, environment=exc.environment, channel=channel,
                transport=transport, detail={"reason": exc.reason, "message": exc.message,
                                             "request": text[:500]},
            )
