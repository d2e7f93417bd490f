"""How runbooks and their runs read in chat."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from bot.core.chat import Actions, Button, Context, Message, Section
from bot.core.config import Role
from bot.core.durations import format_duration
from bot.runbooks.format import Runbook, Step
from bot.runbooks.models import RunbookRun, RunbookStepRecord, RunStatus, StepStatus

_ICON = {
    StepStatus.OK: ":white_check_mark:",
    StepStatus.FAILED: ":x:",
    StepStatus.SKIPPED: ":fast_forward:",
}
_RUN_ICON = {
    RunStatus.RUNNING: ":gear:",
    RunStatus.WAITING: ":raised_hand:",
    RunStatus.SUCCEEDED: ":white_check_mark:",
    RunStatus.FAILED: ":x:",
    RunStatus.REJECTED: ":no_entry:",
    RunStatus.CANCELLED: ":black_square_for_stop:",
}
# Settings every step has; the plan shows only what is particular to a step.
_COMMON = {"name", "type", "when", "timeout", "on_failure"}


def step_settings(step: Step) -> dict[str, Any]:
    data = step.model_dump(by_alias=True, exclude_none=True)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in _COMMON:
            continue
        if isinstance(value, Role):
            value = value.name.lower()
        elif isinstance(value, timedelta):
            value = format_duration(value.total_seconds())
        out[key] = value
    return out


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(runbook: Runbook) -> Message:
    lines = [f"*{runbook.title}* (`{runbook.name}`)"]
    if runbook.description:
        lines.append(runbook.description.strip())
    if runbook.parameters:
        lines.append("*Parameters*")
        for p in runbook.parameters:
            bits: list[str] = [p.type]
            if p.required:
                bits.append("required")
            if p.default is not None:
                bits.append(f"default {p.default}")
            if p.allowed:
                bits.append("one of " + ", ".join(str(a) for a in p.allowed))
            lines.append(f"• `{p.name}` ({'; '.join(bits)}) {p.description}".rstrip())
    if runbook.match:
        matchers = ", ".join(f"{k}={v}" for k, v in runbook.match.items())
        runs = "runs automatically" if runbook.automatic else "offered as a button"
        lines.append(f"*Alerts*: {matchers} ({runs})")
    lines.append("*Steps*")
    for i, step in enumerate(runbook.steps, 1):
        when = f" — when `{step.when}`" if step.when else ""
        lines.append(f"{i}. {step.name} · `{step.type}`{when}")
    return Message(text="\n".join(lines))


def plan(runbook: Runbook, params: dict[str, Any], resolved: list[tuple[Step, Any]]) -> str:
    """A dry run: every step with its final arguments."""
    shown = ", ".join(f"{k}={v}" for k, v in params.items() if v is not None) or "no parameters"
    lines = [f"Dry run of *{runbook.title}* ({shown}):"]
    for i, (step, settings) in enumerate(resolved, 1):
        when = f" (only when `{step.when}`)" if step.when else ""
        lines.append(f"{i}. *{step.name}* `{step.type}`{when}")
        for key, value in settings.items():
            shown = value if isinstance(value, str) else json.dumps(value, default=str)
            lines.append(f"      {key}: `{_short(shown, 500)}`")
    lines.append("Nothing was run or changed.")
    return "\n".join(lines)


def progress(
    run: RunbookRun,
    runbook: Runbook | None,
    records: list[RunbookStepRecord],
    waiting_message: str | None = None,
) -> Message:
    icon = _RUN_ICON.get(RunStatus(run.status), "")
    who = "automatically" if run.automatic else f"by <@{run.started_by}>"
    title = runbook.title if runbook else run.title
    head = f"{icon} Runbook *{title}* run #{run.id} — {run.status} (started {who})"
    done = {r.index: r for r in records}
    lines = []
    steps = runbook.steps if runbook else []
    for i, step in enumerate(steps):
        record = done.get(i)
        if record is not None:
            mark = _ICON.get(StepStatus(record.status), "")
            lines.append(f"{mark} {step.name}: {_short(record.summary, 200)}")
        elif i == run.step and not run.finished:
            mark = (
                ":raised_hand:" if run.status == RunStatus.WAITING else ":hourglass_flowing_sand:"
            )
            lines.append(f"{mark} {step.name}")
        else:
            lines.append(f":white_small_square: {step.name}")
    blocks: list[Any] = [Section(text=head), Section(text="\n".join(lines) or "(no steps)")]
    if run.error and run.finished:
        blocks.append(Context(text=_short(run.error, 500)))
    if run.status == RunStatus.WAITING:
        blocks.append(Section(text=f":raised_hand: {waiting_message or 'Continue?'}"))
        value = f"{run.id}:{run.step}"
        blocks.append(
            Actions(
                buttons=[
                    Button(
                        label="Approve", action_id="runbook_approve", value=value, style="primary"
                    ),
                    Button(label="Reject", action_id="runbook_reject", value=value, style="danger"),
                ]
            )
        )
    elif not run.finished:
        blocks.append(
            Actions(
                buttons=[
                    Button(label="Cancel run", action_id="runbook_cancel", value=str(run.id)),
                ]
            )
        )
    return Message(text=head + "\n" + "\n".join(lines), blocks=blocks)


def detail(run: RunbookRun, record: RunbookStepRecord) -> str:
    mark = _ICON.get(StepStatus(record.status), "")
    took = (record.finished_at - record.started_at).total_seconds()
    lines = [
        f"{mark} Run #{run.id} · *{record.name}* (`{record.type}`, {took:.1f}s): {record.summary}"
    ]
    if record.inputs:
        lines.append(f"inputs: `{_short(record.inputs)}`")
    if record.output:
        lines.append(f"output: `{_short(record.output)}`")
    return "\n".join(lines)
