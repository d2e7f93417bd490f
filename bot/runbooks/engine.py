"""Advancing runs: one scheduler tick per step (or per poll of a long step).

A tick reads the run, does the step's outside work with no transaction open,
and commits the result, the step record, the timeline line, the audit entry,
the edited progress message and the next tick together with the job's own
completion. A process killed mid-step resumes that step: a wait keeps the
deadline committed with its first tick, a rollback's start is committed
before it is issued (so one already issued is adopted, not issued twice),
and a read, message or shell command is simply run again.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core import audit
from bot.core.audit import Actor
from bot.core.chat import Message
from bot.core.clock import Clock
from bot.core.db import Database
from bot.core.durations import format_duration
from bot.core.errors import ChatOpsError, Refused
from bot.core.outbox import Outbox
from bot.core.scheduler import JobContext, Scheduler
from bot.incidents.models import Incident
from bot.incidents.service import IncidentService
from bot.runbooks import format as f
from bot.runbooks import render
from bot.runbooks.models import RunbookRun, RunbookStepRecord, RunStatus, StepStatus
from bot.runbooks.steps import Again, Done, StepRunner
from bot.runbooks.templating import TemplateFailed, condition, context_for
from bot.runbooks.templating import render as render_template

log = logging.getLogger("chatops.runbooks")

TICK = "runbook.tick"
BOT = "chatops"  # who starts automatic runs


def tick_key(run_id: int | None) -> str:
    return f"runbook-run-{run_id}"


def actor_for(run: RunbookRun, runbook: f.Runbook) -> Actor | None:
    """On whose authority a change step acts: the person who started the
    run, or, for an automatic run, the last person who approved it (None
    before anyone has: an automatic run changes nothing on its own)."""
    if not run.automatic:
        return Actor(run.started_by, run.channel, "runbook")
    approver = None
    for step in runbook.steps[: run.step]:
        out = run.outputs.get(step.name) or {}
        if isinstance(step, f.Approval) and out.get("approved_by"):
            approver = out["approved_by"]
    return Actor(approver, run.channel, "runbook") if approver else None


class RunEngine:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        outbox: Outbox,
        scheduler: Scheduler,
        incidents: IncidentService,
        runner: StepRunner,
        runbooks: dict[str, f.Runbook],
    ) -> None:
        self.db, self.clock, self.outbox, self.scheduler = db, clock, outbox, scheduler
        self.incidents, self.runner, self.runbooks = incidents, runner, runbooks
        scheduler.handler(TICK)(self._tick)

    # -- messages and records ---------------------------------------------------------

    async def records(self, session: AsyncSession, run_id: int) -> list[RunbookStepRecord]:
        from sqlmodel import col, select

        rows = await session.exec(
            select(RunbookStepRecord)
            .where(RunbookStepRecord.run_id == run_id)
            .order_by(col(RunbookStepRecord.id))
        )
        return list(rows.all())

    async def refresh(self, session: AsyncSession, run: RunbookRun) -> None:
        runbook = self.runbooks.get(run.runbook)
        waiting = None
        if run.status == RunStatus.WAITING:
            waiting = str((run.step_state.get("inputs") or {}).get("message") or "Continue?")
            if runbook is not None:
                step = runbook.steps[run.step]
                if isinstance(step, f.Approval):
                    waiting += f" (someone with the {step.role.name.lower()} role"
                    waiting += ")" if run.automatic else ", not the person who started the run)"
        message = render.progress(run, runbook, await self.records(session, run.id or 0), waiting)
        await self.outbox.update(session, run.key, message)

    async def say(self, session: AsyncSession, run: RunbookRun, text: str | Message) -> None:
        message = text if isinstance(text, Message) else Message(text=text)
        await self.outbox.post(session, "", message, thread_key=run.thread_key)

    async def log_step(
        self,
        session: AsyncSession,
        run: RunbookRun,
        record: RunbookStepRecord,
        actor: Actor | None,
    ) -> None:
        """The step's record, its thread detail, timeline line and audit entry."""
        session.add(record)
        await self.say(session, run, render.detail(run, record))
        if run.incident_id is not None:
            inc = await session.get(Incident, run.incident_id)
            if inc is not None:
                await self.incidents.timeline(
                    session,
                    inc,
                    "runbook",
                    f"Runbook {run.runbook} #{run.id}: {record.name} {record.status}: "
                    f"{record.summary}",
                    actor=actor.user if actor else None,
                    data={"run": run.id, "step": record.index, "status": record.status},
                    at=record.finished_at,
                )
        await audit.by(
            session,
            actor or Actor(BOT, run.channel, "runbook"),
            at=record.finished_at,
            action="runbook.step",
            target=run.runbook,
            environment=run.params.get("environment"),
            outcome="ok" if record.status != StepStatus.FAILED else "error",
            detail={
                "run": run.id,
                "step": record.name,
                "type": record.type,
                "status": record.status,
                "inputs": record.inputs,
            },
        )

    async def finish(
        self, session: AsyncSession, run: RunbookRun, status: RunStatus, error: str | None
    ) -> None:
        run.status, run.error, run.finished_at = status, error, self.clock.now()
        session.add(run)
        await self.refresh(session, run)
        text = f"Runbook {run.runbook} run #{run.id} {status.lower()}" + (
            f": {error}" if error else "."
        )
        if run.incident_id is not None:
            inc = await session.get(Incident, run.incident_id)
            if inc is not None:
                await self.incidents.timeline(session, inc, "runbook", text)
        await audit.by(
            session,
            Actor(run.cancel_requested_by or BOT, run.channel, "runbook"),
            at=self.clock.now(),
            action=f"runbook.{status.lower()}",
            target=run.runbook,
            detail={"run": run.id, "error": error},
        )

    # -- the tick -------------------------------------------------------------------

    async def _tick(self, job: JobContext) -> None:
        async with self.db.transaction() as session:
            run = await session.get(RunbookRun, int(job.payload["run"]))
        if run is None or run.finished:
            return
        runbook = self.runbooks.get(run.runbook)
        now = self.clock.now()
        if runbook is None or run.cancel_requested_by or run.step >= len(runbook.steps):
            async with job.transaction() as session:
                row = await self._lock(session, run)
                if row is not None:
                    if runbook is None:
                        status, error = RunStatus.FAILED, f"runbook {run.runbook} is not loaded"
                    elif run.cancel_requested_by:
                        status = RunStatus.CANCELLED
                        error = f"cancelled by <@{run.cancel_requested_by}>"
                    else:
                        status, error = RunStatus.SUCCEEDED, None
                    await self.finish(session, row, status, error)
                await job.finish(session)
            return
        step = runbook.steps[run.step]
        state = dict(run.step_state)
        if run.status == RunStatus.WAITING:
            deadline = datetime.fromisoformat(state["deadline"])
            if now < deadline:
                return  # an early tick; the deadline's own tick is scheduled
            done = Done(False, f"no decision within {format_duration(step.timeout)}")
            await self._complete(job, run, runbook, step, state, done)
            return
        if "started_at" not in state:
            entered = await self._enter(job, run, runbook, step, state)
            if entered is None:
                return
            state = entered
        started = datetime.fromisoformat(state["started_at"])
        deadline = started + step.timeout
        if isinstance(step, f.Wait) and step.duration is not None:
            deadline += step.duration  # the timeout bounds lateness, not the wait itself
        actor = actor_for(run, runbook)
        outcome: Done | Again
        if now >= deadline:
            outcome = Done(False, f"timed out after {format_duration(step.timeout)}")
        else:
            outcome = await self._attempt(run, step, state, actor, deadline)
        if isinstance(outcome, Again):
            async with job.transaction() as session:
                row = await self._lock(session, run)
                if row is not None and await self._cancelled(session, row):
                    row = None
                if row is not None:
                    if not row.step_state:
                        # The step's first pause: show that it is under way.
                        row.step_state = {**state, **outcome.state}
                        await self.refresh(session, row)
                    row.step_state = {**state, **outcome.state}
                    session.add(row)
                    await self.scheduler.schedule(
                        session,
                        TICK,
                        {"run": run.id},
                        due_at=min(outcome.at, deadline),
                        key=tick_key(run.id),
                    )
                await job.finish(session)
            return
        await self._complete(job, run, runbook, step, state, outcome)

    async def _attempt(
        self,
        run: RunbookRun,
        step: f.Step,
        state: dict[str, Any],
        actor: Actor | None,
        deadline: datetime,
    ) -> Done | Again:
        try:
            return await self.runner.run(step, state["inputs"], state, actor, deadline)
        except Refused as exc:
            async with self.db.transaction() as session:
                await audit.by(
                    session,
                    actor or Actor(BOT, run.channel, "runbook"),
                    at=self.clock.now(),
                    action=exc.action,
                    target=exc.target,
                    environment=exc.environment,
                    outcome="refused",
                    detail={"reason": exc.reason, "run": run.id},
                )
            return Done(False, f"refused: {exc.message}")
        except ChatOpsError as exc:
            return Done(False, exc.message)
        except Exception as exc:  # a step's failure is the run's business, not the worker's
            log.warning("runbook step failed", exc_info=True, extra={"run": run.id})
            return Done(False, f"{type(exc).__name__}: {exc}")

    async def _enter(
        self,
        job: JobContext,
        run: RunbookRun,
        runbook: f.Runbook,
        step: f.Step,
        state: dict[str, Any],
    ) -> dict[str, Any] | None:
        """Start a step: decide `when`, render its settings, and commit that
        it has started. None when the tick has nothing more to do."""
        now = self.clock.now()
        ctx = context_for(run.params, run.context, run.outputs, now)
        try:
            if step.when is not None and not condition(step.when, ctx):
                skipped = Done(True, f"skipped: `{step.when}` is false")
                await self._complete(job, run, runbook, step, {}, skipped, skipped=True)
                return None
            inputs = render_template(render.step_settings(step), ctx)
        except TemplateFailed as exc:
            await self._complete(job, run, runbook, step, {}, Done(False, exc.message))
            return None
        state = {"started_at": now.isoformat(), "inputs": inputs}
        if not isinstance(
            step, f.Approval | f.KubernetesRollback | f.KubernetesRestart | f.KubernetesScale
        ):
            # Nothing to resume from before the step has done anything: a crash
            # re-runs a read, a message or a shell command (they are cheap or
            # idempotent); a wait's deadline is committed with its first tick.
            return state
        async with job.transaction() as session:
            row = await self._lock(session, run)
            if row is None or await self._cancelled(session, row):
                await job.finish(session)
                return None
            if isinstance(step, f.Approval):
                state["deadline"] = (now + step.timeout).isoformat()
                row.status, row.step_state = RunStatus.WAITING, state
                session.add(row)
                await self.refresh(session, row)
                await self.say(
                    session,
                    row,
                    f":raised_hand: Run #{row.id} waits for approval: "
                    f"{inputs.get('message') or 'Continue?'}",
                )
                await self.scheduler.schedule(
                    session,
                    TICK,
                    {"run": run.id},
                    due_at=now + step.timeout,
                    key=tick_key(run.id),
                )
                await job.finish(session)
                return None
            # A change's start is committed before it is made: a crash after
            # making it finds and adopts it instead of making it twice.
            row.step_state = state
            session.add(row)
            await self.refresh(session, row)
        return state

    async def _cancelled(self, session: AsyncSession, row: RunbookRun) -> bool:
        """End the run here if someone asked to cancel it."""
        if not row.cancel_requested_by:
            return False
        await self.finish(
            session, row, RunStatus.CANCELLED, f"cancelled by <@{row.cancel_requested_by}>"
        )
        return True

    async def _lock(self, session: AsyncSession, run: RunbookRun) -> RunbookRun | None:
        """The run, locked, if it is still where this tick found it."""
        row = await session.get(RunbookRun, run.id, with_for_update=True, populate_existing=True)
        if row is None or row.finished or row.step != run.step:
            return None
        return row

    async def _complete(
        self,
        job: JobContext,
        run: RunbookRun,
        runbook: f.Runbook,
        step: f.Step,
        state: dict[str, Any],
        done: Done,
        *,
        skipped: bool = False,
    ) -> None:
        now = self.clock.now()
        actor = actor_for(run, runbook)
        compensation = None
        if not done.ok and step.on_failure == "rollback" and await self._still_at(run):
            compensation = await self._compensate(run, runbook, actor)
        started = state.get("started_at")
        record = RunbookStepRecord(
            run_id=run.id or 0,
            index=run.step,
            name=step.name,
            type=step.type,
            status=StepStatus.SKIPPED
            if skipped
            else StepStatus.OK
            if done.ok
            else StepStatus.FAILED,
            inputs=state.get("inputs") or {},
            output=done.output,
            summary=done.summary + (f"; {compensation}" if compensation else ""),
            started_at=datetime.fromisoformat(started) if started else now,
            finished_at=now,
        )
        async with job.transaction() as session:
            row = await self._lock(session, run)
            if row is None:
                await job.finish(session)
                return
            ok = done.ok and not skipped  # a skipped step did not succeed at anything
            row.outputs = {**row.outputs, step.name: {**done.output, "ok": ok, "skipped": skipped}}
            row.step_state = {}
            await self.log_step(session, row, record, actor)
            if done.post is not None:
                if done.post_to_channel:
                    await self.outbox.post(session, row.channel, done.post)
                else:
                    await self.say(session, row, done.post)
            if done.ok or step.on_failure == "continue":
                row.step += 1
                row.status = RunStatus.RUNNING
            if await self._cancelled(session, row):
                pass  # the step in flight is recorded; the run stops here
            elif row.step >= len(runbook.steps):
                await self.finish(session, row, RunStatus.SUCCEEDED, None)
            elif not done.ok and step.on_failure != "continue":
                await self.finish(session, row, RunStatus.FAILED, f"{step.name}: {record.summary}")
            else:
                session.add(row)
                await self.refresh(session, row)
                await self.scheduler.schedule(session, TICK, {"run": row.id}, key=tick_key(row.id))
            await job.finish(session)

    async def _compensate(self, run: RunbookRun, runbook: f.Runbook, actor: Actor | None) -> str:
        """on_failure: rollback — roll the run's service back (the /rollback path)."""
        service, env = run.params.get("service"), run.params.get("environment")
        if not service:
            return "no rollback: the runbook has no service parameter"
        if actor is None:
            return "no rollback: nobody has approved this automatic run"
        try:
            d = await self.runner.s.ops.deploys.rollback(actor, str(service), env, None)
        except ChatOpsError as exc:
            return f"rollback refused: {exc.message}"
        except Exception as exc:  # the run is failing anyway: say why, do not retry the tick
            log.warning("runbook compensation failed", exc_info=True, extra={"run": run.id})
            return f"rollback failed: {type(exc).__name__}: {exc}"
        return f"rolling {service} back (deploy #{d.id})"

    async def _still_at(self, run: RunbookRun) -> bool:
        """The run is where this tick found it and nobody cancelled it (checked
        just before a compensating rollback, which cannot be taken back)."""
        async with self.db.transaction() as session:
            row = await session.get(RunbookRun, run.id, populate_existing=True)
        return (
            row is not None
            and not row.finished
            and row.step == run.step
            and row.status == run.status
            and not row.cancel_requested_by
        )
