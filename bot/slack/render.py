"""Messages as Slack Block Kit, within Slack's size limits."""

from __future__ import annotations

from typing import Any

from bot.core.chat import Actions, Context, Divider, Message, Section

_SECTION_LIMIT = 3000  # characters of mrkdwn in one section
_FIELD_LIMIT = 2000
_MAX_FIELDS = 10
_MAX_BLOCKS = 50
_TEXT_LIMIT = 39000  # the top-level text of chat.postMessage is cut at 40,000


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str, limit: int = _SECTION_LIMIT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _clip(text, limit) or " "}


def render_blocks(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for block in message.blocks:
        if isinstance(block, Section):
            out: dict[str, Any] = {"type": "section", "text": _mrkdwn(block.text)}
            if block.fields:
                out["fields"] = [_mrkdwn(f"*{label}*\n{value}", _FIELD_LIMIT)
                                 for label, value in block.fields[:_MAX_FIELDS]]
            blocks.append(out)
        elif isinstance(block, Context):
            blocks.append({"type": "context", "elements": [_mrkdwn(block.text)]})
        elif isinstance(block, Divider):
            blocks.append({"type": "divider"})
        elif isinstance(block, Actions):
            elements = []
            for button in block.buttons[:25]:
                element: dict[str, Any] = {
                    "type": "button",
                    "text": {"type": "plain_text", "text": _clip(button.label, 75)},
                    "action_id": button.action_id,
                }
                if button.value:
                    element["value"] = _clip(button.value, 2000)
                if button.style:
                    element["style"] = button.style
                if button.url:
                    element["url"] = button.url
                elements.append(element)
            for menu in block.menus:
                elements.append({
                    "type": "overflow", "action_id": menu.action_id,
                    "options": [{"text": {"type": "plain_text", "text": _clip(label, 75)},
                                 "value": _clip(value, 150)} for label, value in menu.options[:5]],
                })
            blocks.append({"type": "actions", "elements": elements})
    return blocks[:_MAX_BLOCKS]


def render_text_fallback(message: Message) -> str:
    return _clip(message.text, _TEXT_LIMIT)
