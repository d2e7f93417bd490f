"""The registry of commands and button actions.

Each command family registers its forms (grammar patterns) with a handler;
`resolve` picks the form that matches the text, or explains what is wrong.
Subcommand words are reserved: "/deploy status x" never parses as deploying
a service called "status".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.core.chat import ActionContext, CommandContext, Reply
from bot.core.grammar import Parsed, Pattern, UsageError, tokenize

CommandHandler = Callable[[CommandContext, Parsed], Awaitable[Reply]]
ActionHandler = Callable[[ActionContext], Awaitable[Reply | None]]


@dataclass(frozen=True)
class Form:
    pattern: Pattern
    handler: CommandHandler
    summary: str

    @property
    def usage(self) -> str:
        return self.pattern.text


@dataclass
class CommandSpec:
    name: str
    summary: str = ""
    forms: list[Form] = field(default_factory=list)
    # Shown only where it makes sense (e.g. /press in the terminal).
    transports: frozenset[str] | None = None

    def usage(self) -> str:
        return "\n".join(f"`{f.usage}` — {f.summary}" for f in self.forms)


class CommandRegistry:
    def __init__(self) -> None:
        self.commands: dict[str, CommandSpec] = {}
        self.actions: dict[str, ActionHandler] = {}

    def command(
        self, pattern: str, summary: str, *, family_summary: str | None = None,
        transports: frozenset[str] | None = None,
    ) -> Callable[[CommandHandler], CommandHandler]:
        """Register one form; the pattern's first word is the command name."""
        parsed = Pattern(pattern)
        name = pattern.split()[0]
        if not name.startswith("/"):
            raise ValueError(f"command pattern must start with /name: {pattern!r}")

        def decorate(handler: CommandHandler) -> CommandHandler:
            spec = self.commands.setdefault(name, CommandSpec(name))
            spec.forms.append(Form(parsed, handler, summary))
            if family_summary:
                spec.summary = family_summary
            elif not spec.summary:
                spec.summary = summary
            if transports is not None:
                spec.transports = transports
            return handler

        return decorate

    def action(self, action_id: str) -> Callable[[ActionHandler], ActionHandler]:
        def decorate(handler: ActionHandler) -> ActionHandler:
            if action_id in self.actions:
                raise ValueError(f"action {action_id!r} registered twice")
            self.actions[action_id] = handler
            return handler

        return decorate

    def visible(self, transport: str) -> list[CommandSpec]:
        return sorted(
            (s for s in self.commands.values()
             if s.transports is None or transport in s.transports),
            key=lambda s: s.name,
        )

    def resolve(self, name: str, text: str) -> tuple[Form, Parsed]:
        spec = self.commands.get(name)
        if spec is None:
            raise UsageError(f"I don't know the command {name}. Try /help.")
        # The pattern's first word is the command; match the rest.
        tokens = [name, *tokenize(text)]
        words = [t.lower() for t in tokens]
        # Forms whose subcommand words all match the input take precedence.
        best_prefix = max(
            (len(f.pattern.literal_prefix) for f in spec.forms
             if words[: len(f.pattern.literal_prefix)] == f.pattern.literal_prefix),
            default=1,
        )
        candidates = [
            f for f in spec.forms
            if len(f.pattern.literal_prefix) == best_prefix
            and words[:best_prefix] == f.pattern.literal_prefix
        ]
        if not candidates:
            candidates = spec.forms
        errors: list[tuple[int, str]] = []
        for form in candidates:
            try:
                parsed, progress = form.pattern.match(tokens)
            except UsageError as exc:
                errors.append((len(tokens) + 1, exc.message))
                continue
            if parsed is not None:
                return form, parsed
            positional = [t for t in tokens if not ("=" in t or t.startswith("--"))]
            if progress < len(positional):
                errors.append((progress, f"I didn't expect '{positional[progress]}' there."))
            else:
                errors.append((progress, "Some arguments are missing."))
        message = max(errors, key=lambda e: e[0])[1] if errors else "Bad arguments."
        usage = "\n".join(f"`{f.usage}` — {f.summary}" for f in candidates)
        raise UsageError(message, usage)
