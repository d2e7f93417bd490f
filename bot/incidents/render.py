"""How an incident looks: its home message (edited in place) and its timeline."""

from __future__ import annotations

from bot.core.chat import Actions, Button, Context, Message, Overflow, Section
from bot.incidents.models import Incident, IncidentEvent, IncidentStatus

_ICON = {
    "SEV1": ":red_circle:",
    "SEV2": ":large_orange_circle:",
    "SEV3": ":large_yellow_circle:",
    "SEV4": ":white_circle:",
}
_STATUS = {
    IncidentStatus.DECLARED: ":rotating_light:",
    IncidentStatus.TRIGGERED: ":rotating_light:",
    IncidentStatus.ACKNOWLEDGED: ":eyes:",
    IncidentStatus.MITIGATED: ":adhesive_bandage:",
    IncidentStatus.RESOLVED: ":white_check_mark:",
}


def render_incident(
    inc: Incident, *, firing: int = 0, total: int = 0, shown_labels: list[str] | None = None
) -> Message:
    status = IncidentStatus(inc.status)
    head = (
        f"{_ICON.get(inc.severity, '')} *{inc.ref} {inc.severity}: {inc.title}*\n"
        f"{_STATUS[status]} {inc.status}"
    )
    fields = [
        ("Service", inc.service or "—"),
        ("Commander", f"<@{inc.commander}>" if inc.commander else "nobody yet"),
    ]
    if total:
        fields.append(("Alerts", f"{firing} firing / {total}"))
    labels = [f"`{k}={inc.labels[k]}`" for k in (shown_labels or []) if k in inc.labels]
    blocks: list[Section | Context | Actions] = [Section(text=head, fields=fields)]
    if labels:
        blocks.append(Context(text=" ".join(labels)))
    if inc.summary:
        blocks.append(Section(text=f"*Summary:* {inc.summary}"))
    links = [
        Button(label=name.replace("_", " ").title(), action_id=f"link_{name}", url=url)
        for name, url in inc.links.items()
    ]
    buttons: list[Button] = []
    if status in (IncidentStatus.TRIGGERED, IncidentStatus.DECLARED):
        buttons.append(
            Button(
                label="Acknowledge", action_id="incident_ack", value=str(inc.id), style="primary"
            )
        )
    if status != IncidentStatus.RESOLVED:
        buttons.append(
            Button(label="Resolve", action_id="incident_resolve", value=str(inc.id), style="danger")
        )
        menu = Overflow(
            action_id="incident_menu",
            options=[
                ("Take command", f"{inc.id}:commander"),
                *[
                    (f"Severity {s}", f"{inc.id}:sev:{s}")
                    for s in ("SEV1", "SEV2", "SEV3", "SEV4")
                    if s != inc.severity
                ],
            ][:5],
        )
        blocks.append(Actions(buttons=buttons + links, menus=[menu]))
    elif links:
        blocks.append(Actions(buttons=links))
    text = f"{inc.ref} {inc.severity} {inc.status}: {inc.title}"
    return Message(text=text, blocks=list(blocks))


def render_timeline(inc: Incident, events: list[IncidentEvent]) -> str:
    lines = [f"Timeline of {inc.ref} ({inc.severity}, {inc.status}): {inc.title}"]
    for e in events:
        who = f" <@{e.actor}>" if e.actor and e.actor[:1] in "UW" else ""
        lines.append(f"{e.at:%Y-%m-%d %H:%M:%S}Z  {e.kind:<9}{who} {e.text}")
    return "\n".join(lines)
