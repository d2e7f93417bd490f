"""A postmortem as a Slack message and as a Jira description (wiki markup)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.core.chat import Actions, Button, Context, Message, Section
from bot.postmortems.draft import EDITABLE, TITLES, metric_lines
from bot.postmortems.models import ActionItem, JiraStatus, Postmortem
from integrations.jira_issues import escape_markup

_SLACK_TIMELINE_LIMIT = 40
_JIRA_TIMELINE_LIMIT = 200
_JIRA_DESCRIPTION_MAX = 32_000  # Slack sections hold 3000 characters; the rest is in Jira


def _time(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%H:%M:%S")


def _item(item: ActionItem, index: int) -> str:
    bits = [f"{index}. {item.text}"]
    if item.owner:
        bits.append(f"owner <@{item.owner}>")
    if item.due:
        bits.append(f"due {item.due.isoformat()}")
    if item.jira_key:
        bits.append(item.jira_key)
    return " · ".join(bits)


def message(pm: Postmortem, items: list[ActionItem], ref: str) -> Message:
    s = pm.sections
    head = f":memo: *{s.get('title', 'Postmortem')}* — version {pm.version}"
    status = {
        JiraStatus.NONE: "draft, not in Jira yet",
        JiraStatus.PENDING: "publishing to Jira…",
        JiraStatus.PUBLISHED: f"in Jira as {pm.jira_key}"
        + (" (edited since)" if pm.published_version != pm.version else ""),
        JiraStatus.FAILED: f"Jira refused it: {pm.jira_error}",
    }[JiraStatus(pm.jira_status)]
    blocks: list[Any] = [Section(text=head), Context(text=status)]
    parts = [head, status]
    for key in EDITABLE:
        text = f"*{TITLES[key]}*\n{s.get(key, '')}"
        blocks.append(Section(text=text[:2900]))
        parts.append(text)
    metrics = "\n".join(f"{label}: {value}" for label, value in metric_lines(s.get("metrics", {})))
    blocks.append(Section(text=f"*{TITLES['metrics']}*\n{metrics}"))
    parts.append(f"*{TITLES['metrics']}*\n{metrics}")
    rows = s.get("timeline", [])
    lines = [f"`{_time(r['at'])}` {r['text']}" for r in rows[:_SLACK_TIMELINE_LIMIT]]
    if len(rows) > _SLACK_TIMELINE_LIMIT:
        lines.append(f"… and {len(rows) - _SLACK_TIMELINE_LIMIT} more (all of them in Jira)")
    timeline = f"*{TITLES['timeline']}* (UTC)\n" + ("\n".join(lines) or "(nothing recorded)")
    blocks.append(Section(text=timeline[:2900]))
    parts.append(timeline)
    actions = "\n".join(_item(item, i) for i, item in enumerate(items, 1)) or (
        f'_None yet: /postmortem action {ref} "text" @owner due=YYYY-MM-DD_'
    )
    blocks.append(Section(text=f"*{TITLES['action_items']}*\n{actions}"))
    parts.append(f"*{TITLES['action_items']}*\n{actions}")
    blocks.append(
        Actions(
            buttons=[
                Button(label="Edit", action_id="postmortem_edit", value=str(pm.incident_id)),
                Button(
                    label="Publish to Jira",
                    action_id="postmortem_publish",
                    value=str(pm.incident_id),
                    style="primary",
                ),
            ]
        )
    )
    return Message(text="\n".join(parts), blocks=blocks)


def _cell(text: str | None) -> str:
    return escape_markup(text or " ") or " "


def jira_description(pm: Postmortem, items: list[ActionItem], ref: str) -> str:
    """The issue's description in Jira wiki markup: the prose, the response
    metrics and the timeline as tables, and the action items."""
    s = pm.sections
    out: list[str] = []
    for key in EDITABLE:
        out += [f"h2. {TITLES[key]}", s.get(key, ""), ""]
    out += [f"h2. {TITLES['metrics']}", "||Measure||Duration||"]
    out += [
        f"|{_cell(label)}|{_cell(value)}|" for label, value in metric_lines(s.get("metrics", {}))
    ]
    out += ["", f"h2. {TITLES['timeline']}", "||Time (UTC)||What||Who||"]
    rows = s.get("timeline", [])
    if len(rows) > _JIRA_TIMELINE_LIMIT:
        # Jira refuses descriptions over 32,767 characters: keep the first and
        # the last of a very long timeline, and say what was left out.
        half = _JIRA_TIMELINE_LIMIT // 2
        rows = [
            *rows[:half],
            {
                "at": rows[half]["at"],
                "actor": None,
                "text": f"… {len(rows) - 2 * half} more lines in the bot's "
                f"timeline (/incident timeline {ref})",
            },
            *rows[-half:],
        ]
    for row in rows:
        when = datetime.fromisoformat(row["at"]).strftime("%Y-%m-%d %H:%M:%S")
        out.append(f"|{_cell(when)}|{_cell(row['text'])}|{_cell(row.get('actor'))}|")
    out += ["", f"h2. {TITLES['action_items']}"]
    out += [f"# {item.text}" + (f" ({item.jira_key})" if item.jira_key else "") for item in items]
    if not items:
        out.append("None recorded.")
    out += ["", f"_Drafted by chatops-bot from {ref}, version {pm.version}._"]
    return "\n".join(out)[:_JIRA_DESCRIPTION_MAX]
