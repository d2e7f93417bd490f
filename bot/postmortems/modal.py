"""The postmortem's edit form as a Slack modal, and its answers read back.

One input per section people write (the title on one line, the prose
multiline), each pre-filled with the current text. The view is plain
Block Kit data: the Slack transport opens it and hands back what was
submitted; nothing here talks to Slack.
"""

from __future__ import annotations

from typing import Any

from bot.postmortems.draft import EDITABLE, TITLES
from bot.postmortems.models import Postmortem

CALLBACK_ID = "postmortem_edit"
# The transport presses this action when the form is submitted: value is the
# incident id, `extra` the sections changed (section → new text).
SUBMITTED = "postmortem_edit_submitted"
SECTIONS = ("title", *EDITABLE)
# Slack's limits: plain_text_input max_length, an input's label, a modal's
# title and its submit/close buttons.
INPUT_LIMIT = 3000
LABEL_LIMIT = 2000
TITLE_LIMIT = 24


def _plain(text: str, limit: int) -> dict[str, Any]:
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return {"type": "plain_text", "text": text}


def label(section: str) -> str:
    return "Title" if section == "title" else TITLES.get(section, section)


def edit_view(pm: Postmortem, incident_ref: str) -> dict[str, Any]:
    """The modal editing `pm`; `private_metadata` carries its incident id."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"Version {pm.version}. Saving makes a new version, "
                    "shown in the incident's thread; earlier ones are kept.",
                }
            ],
        }
    ]
    too_long: list[str] = []
    for section in SECTIONS:
        text = str(pm.sections.get(section) or "")
        if len(text) > INPUT_LIMIT:
            # Pre-filling a cut copy would cut the section on save.
            too_long.append(section)
            continue
        element: dict[str, Any] = {
            "type": "plain_text_input",
            "action_id": section,
            "multiline": section != "title",
            "max_length": INPUT_LIMIT,
        }
        if text:
            element["initial_value"] = text
        blocks.append(
            {
                "type": "input",
                "block_id": section,
                "label": _plain(label(section), LABEL_LIMIT),
                "element": element,
            }
        )
    if too_long:
        names = ", ".join(too_long)
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"Longer than a Slack form field allows, so not here: {names}. "
                        f"Change them with /postmortem edit {incident_ref} <section> <text>.",
                    }
                ],
            }
        )
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "private_metadata": str(pm.incident_id),
        "title": _plain(f"Postmortem {incident_ref}", TITLE_LIMIT),
        "submit": _plain("Save", TITLE_LIMIT),
        "close": _plain("Cancel", TITLE_LIMIT),
        "blocks": blocks,
    }


def changes_from(view_state: dict[str, Any]) -> dict[str, str]:
    """Section → submitted text, from a submitted view's `state`
    ({"values": {block_id: {action_id: {"type": ..., "value": ...}}}})."""
    out: dict[str, str] = {}
    for block_id, actions in (view_state.get("values") or {}).items():
        if block_id not in SECTIONS or not isinstance(actions, dict):
            continue
        for answer in actions.values():
            if isinstance(answer, dict) and answer.get("type") == "plain_text_input":
                out[block_id] = str(answer.get("value") or "")
    return out


def initial_values(view: dict[str, Any]) -> dict[str, str]:
    """Section → the text the form was opened with."""
    out: dict[str, str] = {}
    for block in view.get("blocks") or []:
        element = block.get("element") or {}
        if block.get("type") == "input" and block.get("block_id") in SECTIONS:
            out[str(block["block_id"])] = str(element.get("initial_value") or "")
    return out


def edited_sections(view: dict[str, Any]) -> dict[str, str]:
    """Only the sections the person changed in the form, so that saving
    does not undo what someone else changed since the form was opened."""
    before = initial_values(view)
    return {
        section: text
        for section, text in changes_from(view.get("state") or {}).items()
        if section not in before or text.strip() != before[section].strip()
    }


def problems(view: dict[str, Any]) -> dict[str, str]:
    """block_id → what is wrong with the answer (shown under the field)."""
    out: dict[str, str] = {}
    for section, text in changes_from(view.get("state") or {}).items():
        if not text.strip():
            out[section] = f"{label(section)} cannot be empty."
        elif len(text) > INPUT_LIMIT:
            out[section] = f"At most {INPUT_LIMIT} characters here."
    return out
