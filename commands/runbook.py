"""/runbook list | show | run | runs | cancel, and the buttons of a run."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bot.core.audit import Actor
from bot.core.chat import ActionContext, CommandContext, Reply, reply
from bot.core.errors import ChatOpsError
from bot.core.grammar import Parsed, UsageError, tokenize
from bot.incidents.service import parse_ref
from bot.runbooks.service import RunbookService

if TYPE_CHECKING:
    from bot.app import BotApp

RUN_USAGE = "/runbook run <name> [INC-n] [param=value ...] [--dry-run]"
_REF = re.compile(r"^INC-\d+$", re.IGNORECASE)


def _actor(ctx: CommandContext | ActionContext) -> Actor:
    return Actor(ctx.user_id, ctx.channel_id, ctx.transport)


def parse_run_args(words: list[str]) -> tuple[dict[str, str], int | None, bool]:
    """`INC-3 service=checkout --dry-run` → params, incident, dry run."""
    params: dict[str, str] = {}
    ref: int | None = None
    dry = False
    for word in words:
        if word == "--dry-run":
            dry = True
        elif _REF.match(word):
            ref = parse_ref(word)
        elif "=" in word and not word.startswith("="):
            name, value = word.split("=", 1)
            if name in params:
                raise UsageError(f"{name} is given twice", RUN_USAGE)
            params[name] = value
        else:
            raise UsageError(
                f"I don't understand '{word}': give parameters as name=value", RUN_USAGE
            )
    return params, ref, dry


def _run_id(value: str) -> int:
    try:
        return int(value.lstrip("#"))
    except ValueError:
        raise ChatOpsError(f"'{value}' is not a run number (e.g. 12 or #12).") from None


def register(bot: BotApp, runbooks: RunbookService) -> None:
    r = bot.registry

    @r.command(
        "/runbook list",
        "The runbooks I can run",
        family_summary="Run scripted runbooks, with approvals and dry-run",
    )
    async def list_(ctx: CommandContext, a: Parsed) -> Reply:
        lines = [
            f"• `{rb.name}` — {rb.title}"
            + (" (automatic for matching alerts)" if rb.automatic else "")
            for rb in sorted(runbooks.runbooks.values(), key=lambda rb: rb.name)
        ]
        if runbooks.errors:
            lines.append(
                f":warning: {len(runbooks.errors)} problem(s) kept some runbook "
                "files from loading; `chatops check-config` lists them."
            )
        return reply("\n".join(lines) if lines else "No runbooks are loaded.")

    @r.command("/runbook show <name>", "A runbook's parameters and steps")
    async def show(ctx: CommandContext, a: Parsed) -> Reply:
        from bot.runbooks.render import describe

        message = describe(runbooks.get(a.get("name")))
        return reply(message.text)

    @r.command(
        "/runbook run <name> [<args...>] [--dry-run]",
        "Run a runbook (INC-n fills parameters from the incident; --dry-run shows the plan)",
    )
    async def run(ctx: CommandContext, a: Parsed) -> Reply:
        params, ref, dry = parse_run_args(tokenize(a.get("args") or ""))
        dry = dry or a.flag("dry-run")
        if ref is None:
            found = await bot.incidents.find_for_channel(ctx.channel_id)
            ref = found.id if found is not None else None
        if dry:
            return reply(await runbooks.dry_run(a.get("name"), params, ref))
        started = await runbooks.start(_actor(ctx), a.get("name"), params, ref)
        where = f"in the thread of INC-{started.incident_id}" if started.incident_id else "here"
        return reply(f"Started run #{started.id} of {started.runbook}; follow it {where}.")

    @r.command("/runbook runs", "Recent runs")
    async def runs(ctx: CommandContext, a: Parsed) -> Reply:
        rows = await runbooks.recent()
        if not rows:
            return reply("No runbook has run yet.")
        return reply(
            "\n".join(
                f"#{row.id} {row.runbook} — {row.status}"
                + (f" (INC-{row.incident_id})" if row.incident_id else "")
                + f", started {'automatically' if row.automatic else f'by <@{row.started_by}>'}"
                for row in rows
            )
        )

    @r.command("/runbook cancel <run>", "Stop a run before its next step")
    async def cancel(ctx: CommandContext, a: Parsed) -> Reply:
        row = await runbooks.cancel(_actor(ctx), _run_id(a.get("run")))
        return reply(f"Run #{row.id} will stop before its next step.")

    def _decision(value: str) -> tuple[int, int]:
        run_id, _, step = value.partition(":")
        return _run_id(run_id), int(step or 0)

    @r.action("runbook_approve")
    async def approve(actx: ActionContext) -> Reply | None:
        run_id, step = _decision(actx.value)
        await runbooks.decide(_actor(actx), run_id, step, approve=True)
        return reply(f"Approved; run #{run_id} goes on.")

    @r.action("runbook_reject")
    async def reject(actx: ActionContext) -> Reply | None:
        run_id, step = _decision(actx.value)
        await runbooks.decide(_actor(actx), run_id, step, approve=False)
        return reply(f"Rejected; run #{run_id} stops.")

    @r.action("runbook_cancel")
    async def cancel_button(actx: ActionContext) -> Reply | None:
        row = await runbooks.cancel(_actor(actx), _run_id(actx.value))
        return reply(f"Run #{row.id} will stop before its next step.")

    @r.action("runbook_start")
    async def start(actx: ActionContext) -> Reply | None:
        name, _, incident = actx.value.partition(":")
        started = await runbooks.start(_actor(actx), name, {}, int(incident) if incident else None)
        return reply(f"Started run #{started.id} of {started.runbook}.")
