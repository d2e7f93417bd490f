"""What each step type does.

A step either finishes (`Done`) or asks to be called again later (`Again`,
with what it must remember): waits, polls and rollouts are a series of short
scheduler ticks, never a coroutine sleeping for minutes, so a restart loses
nothing. Changes go through the same services as the chat commands (RBAC,
locks, audit); `actor` is the person on whose authority the run acts.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from sqlmodel import col, select

from bot.core.audit import Actor
from bot.core.chat import Message
from bot.core.clock import Clock
from bot.core.config import Config
from bot.core.db import Database
from bot.core.durations import format_duration
from bot.core.errors import ChatOpsError
from bot.deploys.analysis import fmt, holds
from bot.deploys.models import Deployment, DeployState, DeployTransition, ScaleEvent
from bot.deploys.operations import DeployOperations
from bot.deploys.ports import MetricsSource
from bot.deploys.restart import RESTARTED_AT, restart
from bot.deploys.rollout import rollout_status
from bot.runbooks import format as f

POLL = timedelta(seconds=2)  # how often a rollout or a rollback is looked at
_SHELL_ENV = ("PATH", "HOME", "LANG", "KUBECONFIG", "TZ")  # nothing secret reaches a command


@dataclass
class Done:
    ok: bool
    summary: str
    output: dict[str, Any] = field(default_factory=dict)
    post: Message | None = None  # a slack.message step's message
    post_to_channel: bool = False


@dataclass
class Again:
    at: datetime
    state: dict[str, Any] = field(default_factory=dict)  # merged into the step's state


Outcome = Done | Again


@dataclass
class StepServices:
    db: Database
    clock: Clock
    config: Config
    ops: DeployOperations
    metrics: MetricsSource | None
    http: Callable[[], Awaitable[aiohttp.ClientSession]]
    shell_env: dict[str, str] = field(default_factory=dict)  # e.g. the bot's KUBECONFIG


def _dotted(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            raise KeyError(path)
    return data


class StepRunner:
    def __init__(self, services: StepServices) -> None:
        self.s = services

    async def run(
        self,
        step: f.Step,
        inputs: dict[str, Any],
        state: dict[str, Any],
        actor: Actor | None,
        deadline: datetime,
    ) -> Outcome:
        if isinstance(step, f.PrometheusQuery):
            return await self._query(inputs)
        if isinstance(step, f.HttpCheck):
            return await self._http(inputs, state, deadline)
        if isinstance(step, f.Wait):
            return await self._wait(step, inputs, state, deadline)
        if isinstance(step, f.SlackMessage):
            text = str(inputs["text"])
            return Done(
                True, "posted", {"text": text}, Message(text=text), inputs["to"] == "channel"
            )
        if actor is None:
            return Done(
                False,
                "an automatic run changes nothing until a person approves it "
                "(put an approval step before this one)",
            )
        if isinstance(step, f.Shell):
            return await self._shell(step, inputs, deadline)
        if isinstance(step, f.KubernetesRestart):
            return await self._restart(inputs, state, actor)
        if isinstance(step, f.KubernetesScale):
            return await self._scale(inputs, state, actor)
        if isinstance(step, f.KubernetesRollback):
            return await self._rollback(inputs, state, actor)
        raise ChatOpsError(f"step type {step.type} is not run by the step runner")

    # -- reading ------------------------------------------------------------------

    async def _samples(self, promql: str) -> list[tuple[dict[str, str], float]]:
        if self.s.metrics is None:
            raise ChatOpsError("No Prometheus is configured (PROMETHEUS_URL).")
        return await self.s.metrics.query(promql)

    async def _query(self, inputs: dict[str, Any]) -> Outcome:
        samples = await self._samples(str(inputs["query"]))
        value = samples[0][1] if samples else None
        output: dict[str, Any] = {
            "value": value,
            "series": [{"labels": lbl, "value": v} for lbl, v in samples[:10]],
        }
        shown = "no data" if value is None else fmt(value)
        if len(samples) > 1:
            shown += f" (first of {len(samples)} series)"
        condition = inputs.get("assert")
        if condition is None:
            return Done(True, f"value {shown}", output)
        if value is None or math.isnan(value):
            return Done(False, f"value {shown}: cannot check {condition}", output)
        ok = holds(str(condition), value)
        return Done(ok, f"value {shown} {'meets' if ok else 'fails'} {condition}", output)

    async def _http(
        self, inputs: dict[str, Any], state: dict[str, Any], deadline: datetime
    ) -> Outcome:
        attempt = int(state.get("attempt", 0)) + 1
        left = max(1.0, (deadline - self.s.clock.now()).total_seconds())
        session = await self.s.http()
        problem: str
        output: dict[str, Any] = {"attempts": attempt}
        try:
            async with session.request(
                inputs["method"],
                str(inputs["url"]),
                timeout=aiohttp.ClientTimeout(total=min(left, 30.0)),
            ) as response:
                output["status"] = response.status
                body = await response.text()
                if response.status != int(inputs["expect_status"]):
                    problem = f"answered {response.status}, expected {inputs['expect_status']}"
                elif inputs.get("json_field"):
                    try:
                        import json

                        value = _dotted(json.loads(body), str(inputs["json_field"]))
                    except (ValueError, KeyError):
                        value = None
                        problem = f"the answer has no JSON field {inputs['json_field']}"
                    else:
                        output["value"] = value
                        expected = inputs.get("json_value")
                        if expected is None or value == expected or str(value) == str(expected):
                            return Done(
                                True, f"{response.status}, {inputs['json_field']}={value}", output
                            )
                        problem = f"{inputs['json_field']} is {value!r}, expected {expected!r}"
                else:
                    return Done(True, f"answered {response.status}", output)
        except (aiohttp.ClientError, TimeoutError) as exc:
            problem = f"no answer: {exc or type(exc).__name__}"
        if attempt <= int(inputs["retries"]):
            return Again(self.s.clock.now() + POLL, {"attempt": attempt, "last": problem})
        return Done(False, f"{inputs['url']} {problem}", output)

    async def _wait(
        self, step: f.Wait, inputs: dict[str, Any], state: dict[str, Any], deadline: datetime
    ) -> Outcome:
        now = self.s.clock.now()
        started = datetime.fromisoformat(state["started_at"])
        if step.duration is not None:
            until = started + step.duration
            if now >= until:
                return Done(True, f"waited {format_duration(step.duration)}")
            return Again(until, {"until": until.isoformat()})
        samples = await self._samples(str(inputs["until"]))
        if samples:  # a PromQL comparison keeps only the series for which it holds
            return Done(
                True,
                f"condition held after {format_duration(now - started)}",
                {"value": samples[0][1]},
            )
        if now + step.every >= deadline:
            return Done(False, f"condition did not hold within {format_duration(step.timeout)}")
        return Again(now + step.every)

    async def _shell(self, step: f.Shell, inputs: dict[str, Any], deadline: datetime) -> Outcome:
        argv = [str(a) for a in inputs["command"]]
        if argv[0] not in self.s.config.runbooks.shell_allowlist:
            return Done(False, f"'{argv[0]}' is not on the shell allowlist")
        for written, given in zip(step.command, argv, strict=True):
            # A value from a parameter or an alert label must not become an
            # option (`--kubeconfig=...`): only the runbook's author writes those.
            if given.startswith("-") and not written.startswith("-"):
                return Done(
                    False,
                    f"refused: the argument {given!r} comes from a template "
                    "and would be read as an option",
                )
        env = {k: os.environ[k] for k in _SHELL_ENV if k in os.environ} | self.s.shell_env
        limit = int(inputs["max_output"])
        left = max(1.0, (deadline - self.s.clock.now()).total_seconds())
        # An argv, never a shell: metacharacters in arguments are just characters.
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            return Done(False, f"cannot run {argv[0]}: {exc.strerror}")
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=left)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return Done(False, f"{argv[0]} did not finish within {int(left)}s; killed")
        stdout = out.decode(errors="replace")
        stderr = err.decode(errors="replace")
        output = {
            "exit_code": proc.returncode,
            "stdout": stdout[:limit],
            "stderr": stderr[:limit],
            "truncated": len(stdout) > limit or len(stderr) > limit,
        }
        ok = proc.returncode == 0
        return Done(ok, f"{argv[0]} exited {proc.returncode}", output)

    # -- changing ---------------------------------------------------------------

    async def _rollout_done(self, namespace: str, workload: str, env: str) -> tuple[bool, str]:
        cluster = self.s.ops.engine.cluster_for(env)
        obj = await cluster.get_deployment(namespace, workload)
        if obj is None:
            raise ChatOpsError(f"Deployment {namespace}/{workload} is gone.")
        status = rollout_status(obj)
        if status.failed:
            raise ChatOpsError(status.message)
        return status.done, status.message

    async def _restart(
        self, inputs: dict[str, Any], state: dict[str, Any], actor: Actor
    ) -> Outcome:
        if "workload" not in state and await self._restarted_since(inputs, state):
            svc = self.s.ops.deploys.service(str(inputs["service"]), "restart")
            env = self.s.ops.deploys.environment(svc, str(inputs["environment"]), "restart")
            workload = await self.s.ops._workload(svc.name, env.name, svc.k8s_deployment)
            state = {
                "namespace": svc.namespace_for(env.name),
                "workload": workload,
                "env": env.name,
            }
            return Again(self.s.clock.now() + POLL, state)
        if "workload" not in state:
            done = await restart(
                self.s.ops, actor, str(inputs["service"]), str(inputs["environment"])
            )
            state = {
                "namespace": done.namespace,
                "workload": done.workload,
                "env": done.environment,
            }
            return Again(self.s.clock.now() + POLL, state)
        ok, message = await self._rollout_done(state["namespace"], state["workload"], state["env"])
        if ok:
            return Done(True, f"restarted: {message}", {"workload": state["workload"]})
        return Again(self.s.clock.now() + POLL)

    async def _scale(self, inputs: dict[str, Any], state: dict[str, Any], actor: Actor) -> Outcome:
        try:
            replicas = int(str(inputs["replicas"]).strip())
        except ValueError:
            return Done(False, f"replicas must be a whole number, not '{inputs['replicas']}'")
        if "workload" not in state:
            svc = self.s.ops.deploys.service(str(inputs["service"]), "scale")
            env = self.s.ops.deploys.environment(svc, str(inputs["environment"]), "scale")
            if await self._scaled_since(svc.name, env.name, replicas, state):
                text = f"Scaled {svc.name} in {env.name} to {replicas} (before a restart)."
            else:
                text = await self.s.ops.scale(actor, svc.name, replicas, env.name)
            workload = await self.s.ops._workload(svc.name, env.name, svc.k8s_deployment)
            state = {
                "namespace": svc.namespace_for(env.name),
                "workload": workload,
                "env": env.name,
                "said": text,
            }
            return Again(self.s.clock.now() + POLL, state)
        ok, _ = await self._rollout_done(state["namespace"], state["workload"], state["env"])
        if ok:
            return Done(
                True, f"{state['said']} All replicas are available.", {"replicas": replicas}
            )
        return Again(self.s.clock.now() + POLL)

    async def _rollback(
        self, inputs: dict[str, Any], state: dict[str, Any], actor: Actor
    ) -> Outcome:
        deployment_id = state.get("deployment")
        if deployment_id is None:
            deployment_id = await self._issued_rollback(inputs, state)
        if deployment_id is None:
            d = await self.s.ops.deploys.rollback(
                actor, str(inputs["service"]), str(inputs["environment"]), inputs.get("to") or None
            )
            return Again(self.s.clock.now() + POLL, {"deployment": d.id})
        async with self.s.db.transaction() as session:
            row = await session.get(Deployment, int(deployment_id))
        if row is None:
            return Done(False, f"rollback #{deployment_id} is gone")
        d = row
        # A rollback that worked ends RolledBack (a deploy ends Completed);
        # one superseded by a later rollback also ends RolledBack, with that reason.
        if d.state in (DeployState.COMPLETED, DeployState.ROLLED_BACK) and not (
            await self._superseded(d.id or 0)
        ):
            return Done(
                True,
                f"rolled back to {d.version} (deploy #{d.id})",
                {"deployment": d.id, "version": d.version},
            )
        if DeployState(d.state).terminal:
            return Done(
                False,
                f"rollback #{d.id} ended {d.state}: {d.error or ''}".strip(),
                {"deployment": d.id},
            )
        return Again(self.s.clock.now() + POLL, {"deployment": d.id})

    async def _superseded(self, deployment_id: int) -> bool:
        async with self.s.db.transaction() as session:
            last = (
                await session.exec(
                    select(DeployTransition)
                    .where(DeployTransition.deployment_id == deployment_id)
                    .order_by(col(DeployTransition.id).desc())
                    .limit(1)
                )
            ).first()
        return last is not None and last.reason.startswith("superseded")

    async def _scaled_since(
        self, service: str, env: str, replicas: int, state: dict[str, Any]
    ) -> bool:
        """This step's scale, made before a crash kept it from being recorded."""
        since = datetime.fromisoformat(state["started_at"])
        async with self.s.db.transaction() as session:
            row = (
                await session.exec(
                    select(ScaleEvent).where(
                        ScaleEvent.service == service,
                        ScaleEvent.environment == env,
                        ScaleEvent.replicas == replicas,
                        col(ScaleEvent.at) >= since,
                    )
                )
            ).first()
        return row is not None

    async def _restarted_since(self, inputs: dict[str, Any], state: dict[str, Any]) -> bool:
        """This step's restart, made before a crash kept it from being recorded."""
        svc = self.s.ops.deploys.service(str(inputs["service"]), "restart")
        env = self.s.ops.deploys.environment(svc, str(inputs["environment"]), "restart")
        workload = await self.s.ops._workload(svc.name, env.name, svc.k8s_deployment)
        obj = await self.s.ops.engine.cluster_for(env.name).get_deployment(
            svc.namespace_for(env.name), workload
        )
        annotations = (
            (((obj or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}
        ).get("annotations") or {}
        stamp = annotations.get(RESTARTED_AT)
        started = datetime.fromisoformat(state["started_at"]).strftime("%Y-%m-%dT%H:%M:%SZ")
        return isinstance(stamp, str) and stamp >= started

    async def _issued_rollback(self, inputs: dict[str, Any], state: dict[str, Any]) -> int | None:
        """After a crash between issuing the rollback and recording it, adopt
        the rollback this step started instead of issuing a second one (the
        step's start time was committed before anything was issued)."""
        since = datetime.fromisoformat(state["started_at"])
        async with self.s.db.transaction() as session:
            row = (
                await session.exec(
                    select(Deployment)
                    .where(
                        Deployment.kind == "rollback",
                        Deployment.service == str(inputs["service"]),
                        Deployment.environment == str(inputs["environment"]),
                        col(Deployment.created_at) >= since,
                    )
                    .order_by(col(Deployment.id))
                )
            ).first()
        return row.id if row is not None else None
