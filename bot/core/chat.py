"""Transport-neutral conversation types.

Commands receive a CommandContext and return a Reply; buttons arrive as an
ActionContext. Slack renders messages as Block Kit, the terminal as text,
tests read them as data. Messages are pydantic models so the outbox can store
them as JSON and any transport can render them later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Transport = Literal["slack", "shell", "test", "scheduler", "webhook"]


class _Block(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Section(_Block):
    type: Literal["section"] = "section"
    text: str
    fields: list[tuple[str, str]] = []  # (label, value) pairs shown as a grid


class Context(_Block):
    """Small grey print: timestamps, who did what."""

    type: Literal["context"] = "context"
    text: str


class Divider(_Block):
    type: Literal["divider"] = "divider"


class Button(_Block):
    label: str
    action_id: str
    value: str = ""
    style: Literal["primary", "danger"] | None = None
    url: str | None = None  # a link button; pressing it does not reach the bot


class Overflow(_Block):
    """A "more" menu: each option presses `action_id` with its value."""

    action_id: str
    options: list[tuple[str, str]]  # (label, value)


class Actions(_Block):
    type: Literal["actions"] = "actions"
    buttons: list[Button]
    menus: list[Overflow] = []


Block = Annotated[Section | Context | Divider | Actions, Field(discriminator="type")]


class Message(BaseModel):
    """What the bot says. `text` is complete on its own (notifications, the
    terminal, screen readers); blocks add structure and buttons."""

    model_config = ConfigDict(frozen=True)

    text: str
    blocks: list[Block] = []

    def buttons(self) -> list[Button]:
        return [b for block in self.blocks if isinstance(block, Actions) for b in block.buttons]


class Reply(Message):
    """A command's answer to the person who ran it. Ephemeral replies are
    shown only to them; public ones to the whole channel."""

    ephemeral: bool = True


def reply(text: str, *blocks: Section | Context | Divider | Actions, public: bool = False) -> Reply:
    return Reply(text=text, blocks=list(blocks), ephemeral=not public)


@dataclass(frozen=True)
class CommandContext:
    command: str  # "/deploy"
    text: str  # everything after the command
    user_id: str
    channel_id: str
    transport: Transport
    thread_ts: str | None = None
    user_name: str | None = None
    team_id: str | None = None
    response_url: str | None = None
    trigger_id: str | None = None


@dataclass(frozen=True)
class ActionContext:
    """A button press."""

    action_id: str
    value: str
    user_id: str
    channel_id: str
    transport: Transport
    message_ts: str | None = None
    thread_ts: str | None = None
    response_url: str | None = None
    trigger_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
