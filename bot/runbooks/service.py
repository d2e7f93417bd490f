"""What people (and alerts) do with runbooks: list, show, dry-run, start,
approve, reject, cancel; and offering or starting runbooks for new incidents."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core import audit
from bot.core.audit import Actor
from bot.core.chat import Actions, Button, Message, Section
from bot.core.config import Config, Role
from bot.core.config_loader import ConfigError
from bot.core.errors import ChatOpsError, NotFound, Refused
from bot.core.events import IncidentChanged
from bot.core.rbac import Authorizer
from bot.incidents.models import Incident
from bot.incidents.routing import labels_match
from bot.runbooks import format as f
from bot.runbooks import render
from bot.runbooks.engine import BOT, TICK, RunEngine, tick_key
from bot.runbooks.loader import load_runbooks
from bot.runbooks.models import RunbookRun, RunbookStepRecord, RunStatus, StepStatus
from bot.runbooks.templating import (
    TemplateFailed,
    condition,
    context_for,
    resolve_params,
    uses_outputs,
)
from bot.runbooks.templating import render as render_template

log = logging.getLogger("chatops.runbooks")

# Steps that change something: starting a runbook with one needs the deployer role.
_CHANGES = (f.KubernetesRestart, f.KubernetesScale, f.KubernetesRollback, f.Shell, f.HttpCheck)
_TARGETED = (f.KubernetesRestart, f.KubernetesScale, f.KubernetesRollback)


def incident_context(inc: Incident) -> dict[str, Any]:
    return {
        "labels": dict(inc.labels),
        "alert": {"name": inc.labels.get("alertname", ""), "labels": dict(inc.labels)},
        "incident": {
            "ref": inc.ref,
            "id": inc.id,
            "title": inc.title,
            "severity": inc.severity,
            "service": inc.service,
        },
    }


def matches(runbook: f.Runbook, inc: Incident) -> bool:
    named = inc.links.get("runbook_name") or inc.links.get("runbook") or ""
    if named and re.search(rf"(^|/){re.escape(runbook.name)}(\.ya?ml)?$", named):
        return True
    return bool(runbook.match) and labels_match(runbook.match, inc.labels)


class RunbookService:
    def __init__(
        self, engine: RunEngine, config: Config, auth: Authorizer, errors: list[ConfigError]
    ) -> None:
        self.engine, self.config, self.auth = engine, config, auth
        self.db, self.clock, self.outbox = engine.db, engine.clock, engine.outbox
        self.runbooks = engine.runbooks
        self.errors = errors  # files that failed to load: named when someone asks for them
        self._http: aiohttp.ClientSession | None = None

    @staticmethod
    def load(config: Config) -> tuple[dict[str, f.Runbook], list[ConfigError]]:
        paths = [Path(p) for p in config.runbooks.paths]
        runbooks, errors = load_runbooks(paths, config.runbooks.shell_allowlist)
        return {r.name: r for r in runbooks}, errors

    async def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def get(self, name: str) -> f.Runbook:
        runbook = self.runbooks.get(name)
        if runbook is not None:
            return runbook
        broken = [e for e in self.errors if Path(e.file).stem == name]
        if broken:
            raise ChatOpsError(
                f"The runbook {name} did not load, so it cannot run: "
                + "; ".join(str(e) for e in broken[:3])
            )
        known = ", ".join(sorted(self.runbooks)) or "none"
        raise NotFound(f"There is no runbook '{name}' (runbooks: {known}).")

    # -- planning -------------------------------------------------------------------

    async def _incident(self, ref: int | None) -> Incident | None:
        if ref is None:
            return None
        async with self.db.transaction() as session:
            inc = await session.get(Incident, ref)
        if inc is None:
            raise NotFound(f"There is no INC-{ref}.")
        return inc

    def resolve(
        self, runbook: f.Runbook, given: dict[str, str], inc: Incident | None
    ) -> tuple[dict[str, Any], dict[str, Any], list[tuple[f.Step, Any]]]:
        """Parameters, template context, and every step rendered as far as
        can be known before running; any template error refuses the run."""
        params = resolve_params(runbook, given, inc.labels if inc else None)
        extra = incident_context(inc) if inc else {}
        ctx = context_for(params, extra, None, self.clock.now())
        plan: list[tuple[f.Step, Any]] = []
        for step in runbook.steps:
            try:
                if step.when is not None and not uses_outputs(step.when):
                    condition(step.when, ctx)
                settings = render.step_settings(step)
                plan.append((step, render_template(settings, ctx, planning=True)))
            except TemplateFailed as exc:
                raise ChatOpsError(
                    f"Cannot run {runbook.name}: step '{step.name}': {exc.message}"
                ) from None
        return params, extra, plan

    async def dry_run(self, name: str, given: dict[str, str], ref: int | None) -> str:
        runbook = self.get(name)
        _params, _extra, plan = self.resolve(runbook, given, await self._incident(ref))
        return render.plan(runbook, _params, plan)

    # -- starting -------------------------------------------------------------------

    def _environment(self, params: dict[str, Any]) -> str:
        env = params.get("environment")
        return str(env) if env else self.config.environments[0].name

    def _environments(self, params: dict[str, Any], plan: list[tuple[f.Step, Any]]) -> list[str]:
        """Every environment the run may touch, for authorization: what its
        change steps name, and, when a step names none it can know now (a
        shell command, a probe, an environment from a later output), the
        run's environment parameter, or else every environment."""
        everywhere = [e.name for e in self.config.environments]
        named = params.get("environment")
        envs: set[str] = set()
        for step, settings in plan:
            if not isinstance(step, _CHANGES):
                continue
            target = settings.get("environment") if isinstance(step, _TARGETED) else named
            if not target or "{" in str(target):
                target = named
            if not target:
                return everywhere
            envs.add(str(target))
        return sorted(envs)

    async def _require(
        self, who: Actor, envs: list[str], role: Role, action: str, target: str
    ) -> None:
        for env in envs or [self.config.environments[0].name]:
            await self.auth.require(who.user, env, role, action=action, target=target)

    async def start(
        self, who: Actor, name: str, given: dict[str, str], ref: int | None
    ) -> RunbookRun:
        runbook = self.get(name)
        inc = await self._incident(ref)
        params, extra, plan = self.resolve(runbook, given, inc)
        envs = self._environments(params, plan)
        extra = {**extra, "environments": envs}  # what approvals and cancels are checked in
        changes = any(isinstance(s, _CHANGES) for s in runbook.steps)
        role = Role.DEPLOYER if changes else Role.VIEWER
        await self._require(who, envs, role, "run_runbook", runbook.name)
        async with self.db.transaction() as session:
            return await self._create(session, runbook, params, extra, inc, who, automatic=False)

    async def _create(
        self,
        session: AsyncSession,
        runbook: f.Runbook,
        params: dict[str, Any],
        extra: dict[str, Any],
        inc: Incident | None,
        who: Actor,
        *,
        automatic: bool,
    ) -> RunbookRun:
        now = self.clock.now()
        run = RunbookRun(
            runbook=runbook.name,
            title=runbook.title,
            params=params,
            context=extra,
            incident_id=inc.id if inc else None,
            channel=inc.channel if inc else who.channel or "",
            thread_key="",
            started_by=who.user,
            automatic=automatic,
            created_at=now,
        )
        session.add(run)
        await session.flush()
        run.thread_key = inc.ref if inc else run.key
        session.add(run)
        message = render.progress(run, runbook, [])
        if inc is not None:
            await self.outbox.post(session, "", message, key=run.key, thread_key=inc.ref)
            how = "automatically" if automatic else f"by <@{who.user}>"
            await self.engine.incidents.timeline(
                session,
                inc,
                "runbook",
                f"Runbook {runbook.name} #{run.id} started {how}",
                actor=None if automatic else who.user,
                data={"run": run.id},
                at=now,
            )
        else:
            await self.outbox.post(session, run.channel, message, key=run.key)
        await audit.by(
            session,
            who,
            at=now,
            action="runbook.start",
            target=runbook.name,
            environment=params.get("environment"),
            detail={
                "run": run.id,
                "params": params,
                "incident": run.incident_id,
                "automatic": automatic,
            },
        )
        await self.engine.scheduler.schedule(session, TICK, {"run": run.id}, key=tick_key(run.id))
        return run

    # -- deciding -------------------------------------------------------------------

    async def _run(self, session: AsyncSession, run_id: int, *, lock: bool) -> RunbookRun:
        run = await session.get(RunbookRun, run_id, with_for_update=lock, populate_existing=True)
        if run is None:
            raise NotFound(f"There is no runbook run #{run_id}.")
        return run

    async def decide(self, who: Actor, run_id: int, step_index: int, approve: bool) -> RunbookRun:
        async with self.db.transaction() as session:
            run = await self._run(session, run_id, lock=False)
        runbook = self.get(run.runbook)
        step = runbook.steps[step_index] if step_index < len(runbook.steps) else None
        if not isinstance(step, f.Approval):
            raise ChatOpsError(f"Step {step_index + 1} of run #{run_id} is not an approval.")
        env = self._environment(run.params)
        verb = "approve" if approve else "reject"
        envs = list(run.context.get("environments") or [env])
        await self._require(who, envs, step.role, f"{verb}_runbook_step", run.runbook)
        if approve and not run.automatic and who.user == run.started_by:
            raise Refused(
                f"You started run #{run_id}; someone else must approve it.",
                action="approve_runbook_step",
                target=run.runbook,
                environment=env,
                reason="self_approval",
            )
        now = self.clock.now()
        async with self.db.transaction() as session:
            run = await self._run(session, run_id, lock=True)
            if run.cancel_requested_by:
                raise ChatOpsError(f"Run #{run_id} is being cancelled.")
            if run.status != RunStatus.WAITING or run.step != step_index:
                raise ChatOpsError(
                    f"Run #{run_id} is not waiting for this approval ({run.status})."
                )
            state = run.step_state
            who_key = "approved_by" if approve else "rejected_by"
            record = RunbookStepRecord(
                run_id=run_id,
                index=step_index,
                name=step.name,
                type=step.type,
                status=StepStatus.OK if approve else StepStatus.FAILED,
                inputs=state.get("inputs") or {},
                output={who_key: who.user},
                summary=f"{'approved' if approve else 'rejected'} by <@{who.user}>",
                started_at=datetime_of(state.get("started_at")) or now,
                finished_at=now,
            )
            run.outputs = {**run.outputs, step.name: {who_key: who.user, "ok": approve}}
            run.step_state = {}
            await self.engine.log_step(session, run, record, who)
            if approve:
                run.step += 1
                run.status = RunStatus.RUNNING
                session.add(run)
                await self.engine.refresh(session, run)
                # Replaces the pending approval-timeout tick.
                await self.engine.scheduler.schedule(
                    session, TICK, {"run": run.id}, key=tick_key(run.id)
                )
            else:
                await self.engine.scheduler.cancel(session, tick_key(run.id))
                await self.engine.finish(
                    session, run, RunStatus.REJECTED, f"{step.name}: rejected by <@{who.user}>"
                )
        return run

    async def cancel(self, who: Actor, run_id: int) -> RunbookRun:
        async with self.db.transaction() as session:
            run = await self._run(session, run_id, lock=False)
        if who.user != run.started_by:
            envs = list(run.context.get("environments") or [self._environment(run.params)])
            await self._require(who, envs, Role.DEPLOYER, "cancel_runbook", run.runbook)
        async with self.db.transaction() as session:
            run = await self._run(session, run_id, lock=True)
            if run.finished:
                raise ChatOpsError(f"Run #{run_id} has already ended ({run.status}).")
            run.cancel_requested_by = who.user
            session.add(run)
            if run.status == RunStatus.WAITING:
                await self.engine.scheduler.cancel(session, tick_key(run.id))
                await self.engine.finish(
                    session, run, RunStatus.CANCELLED, f"cancelled by <@{who.user}>"
                )
            else:
                # Stops between steps: a step in flight finishes first, then
                # this tick (which replaces any pending one) ends the run.
                await self.engine.scheduler.schedule(
                    session, TICK, {"run": run.id}, key=tick_key(run.id)
                )
        return run

    async def recent(self, limit: int = 10) -> list[RunbookRun]:
        async with self.db.transaction() as session:
            rows = await session.exec(
                select(RunbookRun).order_by(col(RunbookRun.id).desc()).limit(limit)
            )
            return list(rows.all())

    # -- incidents ------------------------------------------------------------------

    async def on_incident(self, session: AsyncSession, event: IncidentChanged) -> None:
        """A new alert incident: offer the runbooks that fit it, start the automatic ones."""
        if event.change != "opened":
            return
        inc = await session.get(Incident, event.incident_id)
        if inc is None or inc.source != "alert":
            return
        try:
            # A savepoint: whatever goes wrong here, the incident still opens.
            async with session.begin_nested():
                await self._offer(session, inc)
        except Exception:
            log.exception("could not offer runbooks for an incident", extra={"incident": inc.id})

    async def _offer(self, session: AsyncSession, inc: Incident) -> None:
        for runbook in sorted(self.runbooks.values(), key=lambda r: r.name):
            if not matches(runbook, inc):
                continue
            if runbook.automatic:
                try:
                    params, extra, plan = self.resolve(runbook, {}, inc)
                    extra = {**extra, "environments": self._environments(params, plan)}
                except ChatOpsError as exc:
                    await self.outbox.post(
                        session,
                        "",
                        Message(
                            text=f":warning: Runbook {runbook.name} fits this alert but cannot "
                            f"start automatically: {exc.message}"
                        ),
                        thread_key=inc.ref,
                    )
                    continue
                await self._create(
                    session,
                    runbook,
                    params,
                    extra,
                    inc,
                    Actor(BOT, inc.channel, "alert"),
                    automatic=True,
                )
                continue
            text = f":scroll: Runbook *{runbook.title}* fits this alert."
            await self.outbox.post(
                session,
                "",
                Message(
                    text=text,
                    blocks=[
                        Section(text=text),
                        Actions(
                            buttons=[
                                Button(
                                    label=f"Run runbook {runbook.name}",
                                    action_id="runbook_start",
                                    value=f"{runbook.name}:{inc.id}",
                                    style="primary",
                                )
                            ]
                        ),
                    ],
                ),
                thread_key=inc.ref,
            )


def datetime_of(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None
