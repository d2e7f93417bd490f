"""The terminal adapter: the same commands from a prompt.

On a TTY it is an interactive prompt with readline history; with piped
input it reads line by line, prints every reply as plain text, waits for
pending work at the end, and exits 0. Whatever the bot would post to Slack
is printed with its destination, and buttons are shown as `/press` commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from bot.app import BotApp
from bot.core.chat import ActionContext, CommandContext, Reply, reply
from bot.core.grammar import Parsed
from bot.core.render_text import render_text

HISTORY = Path.home() / ".chatops_history"
BANNER = """chatops shell — type /help for commands. Buttons appear as `/press ...` lines.
  :as USER_ID     act as another Slack user (approvals need a second person)
  :channel NAME   run commands as if typed in that channel
  :quit           leave (Ctrl-D works too)"""


class Shell:
    def __init__(self, bot: BotApp, *, user: str, channel: str, out: TextIO) -> None:
        self.bot = bot
        self.user = user
        self.channel = channel
        self.out = out
        self._register_press()

    def _register_press(self) -> None:
        @self.bot.registry.command(
            "/press <action_id> [<value...>]", "Press a button shown as [Label] → /press ...",
            transports=frozenset({"shell"}))
        async def press(ctx: CommandContext, args: Parsed) -> Reply:
            actx = ActionContext(action_id=args.get("action_id"), value=args.get("value", ""),
                                 user_id=ctx.user_id, channel_id=ctx.channel_id,
                                 transport="shell")
            return await self.bot.dispatcher.press(actx) or reply("Pressed.")

    def print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    async def handle_line(self, line: str) -> bool:
        """Run one line; False when the user asked to leave."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        if line.startswith(":"):
            return self._meta(line)
        if not line.startswith("/"):
            self.print("Commands start with a slash — try /help.")
            return True
        command, _, text = line.partition(" ")
        ctx = CommandContext(command=command.lower(), text=text.strip(), user_id=self.user,
                             channel_id=self.channel, transport="shell")
        answer = await self.bot.dispatcher.dispatch(ctx)
        self.print(render_text(answer))
        await self.settle()
        return True

    def _meta(self, line: str) -> bool:
        word, _, arg = line.partition(" ")
        if word in (":quit", ":q", ":exit"):
            return False
        if word == ":as" and arg.strip():
            self.user = arg.strip()
            self.print(f"(now acting as {self.user})")
        elif word == ":channel" and arg.strip():
            self.channel = arg.strip().lstrip("#")
            self.print(f"(now in #{self.channel})")
        else:
            self.print(BANNER)
        return True

    async def settle(self, timeout: float = 3.0) -> None:
        """Let messages caused by the last command appear before the next prompt."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            messages, jobs = await self.bot.pending_work(timedelta(seconds=0.2))
            if messages == 0 and jobs == 0:
                return
            await asyncio.sleep(0.05)


async def run_shell(bot: BotApp, *, user: str, channel: str, wait: float,
                    stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    shell = Shell(bot, user=user, channel=channel, out=out)
    interactive = stdin.isatty()
    if interactive:
        _enable_history()
        shell.print(BANNER)
    loop = asyncio.get_running_loop()

    def read() -> str | None:
        if interactive:
            try:
                return input(f"{shell.user}@#{shell.channel}> ")
            except EOFError:
                return None
        line = stdin.readline()
        return line if line else None

    while True:
        line = await loop.run_in_executor(None, read)
        if line is None or not await shell.handle_line(line):
            break
    if not await bot.wait_idle(wait):
        messages, jobs = await bot.pending_work(timedelta(seconds=wait))
        shell.print(f"(stopping with {messages} message(s) and {jobs} job(s) still pending; "
                    "they are stored and resume when the bot starts again)")
    if interactive:
        with contextlib.suppress(OSError):
            import readline

            readline.write_history_file(HISTORY)
    return 0


def _enable_history() -> None:
    try:
        import readline
    except ImportError:  # not on every platform; the prompt works without it
        return
    with contextlib.suppress(OSError):
        readline.read_history_file(HISTORY)
    readline.set_history_length(1000)
