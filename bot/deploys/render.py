"""How a deployment looks in chat: one message, edited in place as it moves."""

from __future__ import annotations

from datetime import datetime

from bot.core.chat import Actions, Button, Context, Message, Section
from bot.core.durations import format_duration
from bot.deploys.models import Deployment, DeployState

_ICON = {
    DeployState.REQUESTED: ":hourglass:",
    DeployState.AWAITING_APPROVAL: ":raised_hand:",
    DeployState.CONFIGURING: ":gear:",
    DeployState.ROLLING_OUT: ":rocket:",
    DeployState.HEALTH_GATING: ":stethoscope:",
    DeployState.PAUSED: ":double_vertical_bar:",
    DeployState.PROMOTING: ":arrow_up:",
    DeployState.COMPLETED: ":white_check_mark:",
    DeployState.ROLLING_BACK: ":rewind:",
    DeployState.ROLLED_BACK: ":leftwards_arrow_with_hook:",
    DeployState.FAILED: ":x:",
    DeployState.REJECTED: ":no_entry_sign:",
}


def progress_fraction(d: Deployment, steps: int) -> float:
    state = d.deploy_state
    if state in (DeployState.COMPLETED, DeployState.ROLLED_BACK):
        return 1.0
    if state in (
        DeployState.REQUESTED,
        DeployState.AWAITING_APPROVAL,
        DeployState.CONFIGURING,
        DeployState.REJECTED,
    ):
        return 0.0
    if state == DeployState.PROMOTING:
        return 0.9
    if d.strategy == "canary" and steps:
        done = int(d.progress.get("step", 0)) + (0.5 if state == DeployState.HEALTH_GATING else 0)
        return min(0.85, 0.1 + 0.75 * done / steps)
    return {DeployState.ROLLING_OUT: 0.3, DeployState.HEALTH_GATING: 0.6}.get(state, 0.5)


def bar(fraction: float, width: int = 10) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "▰" * filled + "▱" * (width - filled) + f" {round(fraction * 100)}%"


def title(d: Deployment) -> str:
    if d.kind == "rollback":
        return (
            f"Rollback #{d.id}: {d.service} in {d.environment} "
            f"`{d.previous_version or '?'}` → `{d.version}`"
        )
    return (
        f"Deploy #{d.id}: {d.service} `{d.previous_version or '?'}` → `{d.version}` "
        f"to {d.environment} ({d.strategy})"
    )


def render_deploy(d: Deployment, now: datetime, *, steps: int = 0) -> Message:
    state = d.deploy_state
    start = d.started_at or d.created_at
    end = d.finished_at or now
    elapsed = format_duration((end - start).total_seconds()) if start else "0s"
    fields: list[tuple[str, str]] = [
        ("State", f"{_ICON[state]} {state.value}"),
        ("Elapsed", elapsed),
        ("Requested by", f"<@{d.requested_by}>"),
    ]
    if d.approved_by:
        fields.append(("Approved by", f"<@{d.approved_by}>"))
    if d.strategy == "canary" and "weight" in d.progress and not state.terminal:
        fields.append(
            (
                "Canary",
                f"step {int(d.progress.get('step', 0)) + 1}/{steps} at {d.progress['weight']}%",
            )
        )
    analysis = d.progress.get("analysis_summary")
    if analysis:
        fields.append(("Analysis", str(analysis)))
    lines = [f"{_ICON[state]} *{title(d)}*", bar(progress_fraction(d, steps))]
    if d.error and state in (
        DeployState.FAILED,
        DeployState.ROLLED_BACK,
        DeployState.ROLLING_BACK,
        DeployState.REJECTED,
    ):
        lines.append(f"> {d.error}")
    blocks: list[Section | Context | Actions] = [Section(text="\n".join(lines), fields=fields)]
    buttons = _buttons(d)
    if buttons:
        blocks.append(Actions(buttons=buttons))
    if d.forced_reason:
        blocks.append(Context(text=f"Forced during a freeze: {d.forced_reason}"))
    text = f"{title(d)}: {state.value} ({elapsed})"
    return Message(text=text, blocks=list(blocks))


def _buttons(d: Deployment) -> list[Button]:
    value = str(d.id)
    state = d.deploy_state
    if state == DeployState.AWAITING_APPROVAL:
        return [
            Button(label="Approve", action_id="deploy_approve", value=value, style="primary"),
            Button(label="Reject", action_id="deploy_reject", value=value, style="danger"),
        ]
    if state == DeployState.PAUSED:
        return [
            Button(label="Promote", action_id="deploy_promote", value=value, style="primary"),
            Button(label="Abort", action_id="deploy_abort", value=value, style="danger"),
        ]
    if state in (
        DeployState.CONFIGURING,
        DeployState.ROLLING_OUT,
        DeployState.HEALTH_GATING,
        DeployState.PROMOTING,
    ):
        return [
            Button(
                label="Abort and roll back", action_id="deploy_abort", value=value, style="danger"
            )
        ]
    return []
