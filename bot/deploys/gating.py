"""The health gate between rollout steps: Prometheus analysis counted as
Argo Rollouts counts it (bot/deploys/analysis.py). Inconclusive pauses the
deploy for a person; failed or error rolls it back."""

from __future__ import annotations

from datetime import datetime

from bot.core.chat import Actions, Button, Message, Section
from bot.deploys.analysis import AnalysisState, measure, record, verdict
from bot.deploys.models import DeployState
from bot.deploys.ports import MetricsSource
from bot.deploys.rollout import tag_of
from bot.deploys.strategies import DeployContext, Step, Strategy


def variables(ctx: DeployContext) -> dict[str, str]:
    d = ctx.deployment
    workload = ctx.name
    if d.strategy == "canary":
        workload = f"{ctx.name}-canary"
    elif d.strategy == "bluegreen":
        workload = ctx.progress.get("target", {}).get("deployment", ctx.name)
    return {
        "version": tag_of(d.image),
        "service": ctx.service.name,
        "namespace": ctx.namespace,
        "environment": d.environment,
        "deployment": workload,
    }


async def health_gate(
    ctx: DeployContext, source: MetricsSource | None, now: datetime, strategy: Strategy
) -> Step:
    spec = ctx.service.deploy.analysis
    progress = ctx.progress
    if progress.pop("promote_requested", False):
        # A person looked at the inconclusive results and chose to go on.
        for key in ("analysis", "analysis_at", "gate_started"):
            progress.pop(key, None)
        return await strategy.next_after_analysis(ctx)
    # Let the new version serve for a while before judging it: a canary
    # step's pause (Argo's setWeight + pause), or one interval (Flagger's
    # first tick). Measuring at once would find no data for the new version.
    started = progress.setdefault("gate_started", now.isoformat())
    settle = _settle_seconds(ctx, spec.interval.total_seconds() if spec else 0.0)
    waited = (now - datetime.fromisoformat(started)).total_seconds()
    if waited < settle:
        return Step(wait=settle - waited)
    if spec is None or source is None:
        progress.pop("gate_started", None)
        return await strategy.next_after_analysis(ctx)
    last = progress.get("analysis_at")
    if last is not None:
        since = (now - datetime.fromisoformat(last)).total_seconds()
        if since < spec.interval.total_seconds():
            return Step(wait=spec.interval.total_seconds() - since)
    state = AnalysisState.from_json(progress.get("analysis") or {})
    measurements = await measure(spec, source, variables(ctx), now)
    state = record(state, measurements)
    progress["analysis"] = state.to_json()
    progress["analysis_at"] = now.isoformat()
    progress["analysis_summary"] = "; ".join(m.message for m in measurements)[:300]
    outcome = verdict(spec, state)
    step_label = _step_label(ctx)
    if outcome.outcome == "running":
        return Step(wait=spec.interval.total_seconds())
    # The gate for this step is decided: start afresh at the next one.
    for key in ("analysis", "analysis_at", "gate_started"):
        progress.pop(key, None)
    if outcome.outcome == "successful":
        step = await strategy.next_after_analysis(ctx)
        step.notes.insert(0, f":white_check_mark: Analysis passed{step_label}: {outcome.reason}")
        return step
    if outcome.outcome == "inconclusive":
        value = str(ctx.deployment.id)
        ask = Message(
            text=f":double_vertical_bar: Analysis inconclusive{step_label}: {outcome.reason}",
            blocks=[
                Section(
                    text=f":double_vertical_bar: *Analysis inconclusive{step_label}*\n"
                    f"{outcome.reason}\nPromote to continue, or Abort to roll back."
                ),
                Actions(
                    buttons=[
                        Button(
                            label="Promote",
                            action_id="deploy_promote",
                            value=value,
                            style="primary",
                        ),
                        Button(
                            label="Abort", action_id="deploy_abort", value=value, style="danger"
                        ),
                    ]
                ),
            ],
        )
        return Step(
            DeployState.PAUSED,
            f"analysis inconclusive{step_label}: {outcome.reason}",
            notes=[ask],
        )
    return Step(
        DeployState.ROLLING_BACK,
        f"analysis {outcome.outcome}{step_label}: {outcome.reason}",
        wait=0,
        notes=[f":x: Analysis {outcome.outcome}{step_label}: {outcome.reason}"],
    )


def _settle_seconds(ctx: DeployContext, interval: float) -> float:
    if ctx.deployment.strategy == "canary":
        steps = ctx.service.deploy.canary_steps
        index = min(int(ctx.progress.get("step", 0)), len(steps) - 1)
        return steps[index].pause.total_seconds()
    return interval


def _step_label(ctx: DeployContext) -> str:
    if ctx.deployment.strategy != "canary":
        return ""
    return f" at canary step {int(ctx.progress.get('step', 0)) + 1} ({ctx.progress.get('weight')}%)"
