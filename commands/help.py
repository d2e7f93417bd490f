"""/help: the list of commands with their usage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.core.chat import CommandContext, Context, Reply, Section, reply
from bot.core.grammar import Parsed, UsageError

if TYPE_CHECKING:
    from bot.app import BotApp


def register(bot: BotApp) -> None:
    registry = bot.registry

    @registry.command("/help [<command>]", "List the commands, or show how to use one",
                      family_summary="List the commands, or show how to use one")
    async def help_(ctx: CommandContext, args: Parsed) -> Reply:
        wanted = args.get("command")
        if wanted:
            name = wanted if wanted.startswith("/") else f"/{wanted}"
            spec = registry.commands.get(name)
            if spec is None or (spec.transports and ctx.transport not in spec.transports):
                raise UsageError(f"There is no command {name}. Try /help.")
            return reply(f"{name} — {spec.summary}\n{spec.usage()}",
                         Section(text=f"*{name}* — {spec.summary}"),
                         Section(text=spec.usage()))
        specs = registry.visible(ctx.transport)
        lines = [f"{s.name} — {s.summary}" for s in specs]
        usage = "\n".join(f"`{f.usage}`" for s in specs for f in s.forms)
        return reply(
            "Commands:\n" + "\n".join(lines),
            Section(text="*Commands*\n" + "\n".join(f"*{s.name}* — {s.summary}" for s in specs)),
            Section(text=usage),
            Context(text="`/help <command>` shows one command's forms. "
                         "Arguments in [brackets] are optional."),
        )
