"""Messages as plain text, for the terminal and for logs. Buttons are shown
with the command that presses them, so every flow works without Slack."""

from __future__ import annotations

from bot.core.chat import Actions, Button, Context, Divider, Message, Section


def press_command(button: Button) -> str:
    value = f" {button.value}" if button.value else ""
    return f"/press {button.action_id}{value}"


def render_text(message: Message) -> str:
    if not message.blocks:
        return message.text
    lines: list[str] = []
    for block in message.blocks:
        if isinstance(block, Section):
            lines.append(block.text)
            lines.extend(f"  {label}: {value}" for label, value in block.fields)
        elif isinstance(block, Context):
            lines.append(f"  ({block.text})")
        elif isinstance(block, Divider):
            lines.append("  ---")
        elif isinstance(block, Actions):
            lines.extend(
                f"  [{b.label}] → {b.url if b.url else press_command(b)}" for b in block.buttons
            )
            for menu in block.menus:
                lines.extend(f"  [{label}] → /press {menu.action_id} {value}"
                             for label, value in menu.options)
    return "\n".join(lines)
