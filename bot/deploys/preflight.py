"""The checks a deploy request must pass before anything changes: freeze
windows, deploy locks, the running image, the source ref and its CI checks,
and the changelog shown with the plan. Each refusal is a Refused, which the
dispatcher audits; scale and restart share the lock check."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.audit import Actor
from bot.core.config import Environment, Role, Service
from bot.core.errors import ChatOpsError, Refused
from bot.core.rbac import Authorizer
from bot.deploys.engine import DeployEngine
from bot.deploys.freeze import active_freeze
from bot.deploys.models import DeployLock
from bot.deploys.rollout import image_of, tag_of

log = logging.getLogger("chatops.deploys")


@dataclass
class Plan:
    """The outcome of a deploy request (a dry run stops here)."""

    deployment_id: int | None
    service: str
    environment: str
    version: str
    image: str
    strategy: str
    running: str | None
    approval_needed: bool
    checks: str
    changelog: list[str]
    dry_run: bool


async def check_lock(
    session: AsyncSession, who: Actor, svc: Service, env: str, action: str
) -> None:
    lock = await session.get(DeployLock, (svc.name, env))
    if lock is not None and lock.owner != who.user:
        raise Refused(
            f"{svc.name} in {env} is locked by <@{lock.owner}>: {lock.reason}",
            action=action,
            target=svc.name,
            environment=env,
            reason="locked",
        )


class Preflight:
    def __init__(self, engine: DeployEngine, auth: Authorizer) -> None:
        self.engine, self.auth = engine, auth
        self.config, self.clock = engine.config, engine.clock

    async def freeze(
        self, who: Actor, svc: Service, env: Environment, force: bool, reason: str | None
    ) -> str | None:
        frozen = active_freeze(self.config, env.name, self.clock.now())
        if frozen is None:
            return None
        window, end = frozen
        until = end.strftime("%Y-%m-%d %H:%M %Z")
        if not force:
            raise Refused(
                f"{env.name} is frozen until {until} ({window.name}: {window.reason}). "
                'An admin can override with --force reason="...".',
                action="deploy",
                target=svc.name,
                environment=env.name,
                reason="freeze",
            )
        await self.auth.require(
            who.user, env.name, Role.ADMIN, action="force_deploy_in_freeze", target=svc.name
        )
        if not reason:
            raise Refused(
                'Forcing a deploy during a freeze needs a reason: reason="why this cannot wait".',
                action="deploy",
                target=svc.name,
                environment=env.name,
                reason="freeze_no_reason",
            )
        return f"{reason} (during {window.name}, by <@{who.user}>)"

    async def running_image(
        self, svc: Service, env: Environment, workload: str | None = None
    ) -> str | None:
        cluster = self.engine.cluster_for(env.name)
        try:
            current = await cluster.get_deployment(
                svc.namespace_for(env.name), workload or svc.k8s_deployment
            )
        except Exception as exc:
            raise ChatOpsError(f"Cannot reach the {env.name} cluster: {exc}") from None
        if current is None:
            raise ChatOpsError(
                f"Deployment {svc.namespace_for(env.name)}/{svc.k8s_deployment} "
                f"does not exist in the {env.name} cluster."
            )
        return image_of(current, svc.container)

    async def source(
        self, svc: Service, env: Environment, version: str
    ) -> tuple[str | None, datetime | None, str]:
        scm = self.engine.scm
        if not svc.github_repo:
            return None, None, "no repository configured"
        if scm is None:
            return None, None, "skipped (GITHUB_TOKEN is not set)"
        try:
            commit = await scm.resolve(svc.github_repo, version)
        except Exception as exc:
            raise ChatOpsError(f"Cannot check {version} on GitHub: {exc}") from None
        if commit is None:
            raise Refused(
                f"{version} does not exist in {svc.github_repo}.",
                action="deploy",
                target=svc.name,
                environment=env.name,
                reason="missing_ref",
            )
        if not svc.deploy.require_checks:
            return commit.sha, commit.date, "not required"
        checks = await scm.checks(svc.github_repo, commit.sha)
        if checks.state != "success":
            detail = {
                "failure": f"failing: {', '.join(checks.failing)}",
                "pending": f"still running: {', '.join(checks.pending)}",
                "none": "no checks have reported",
            }[checks.state]
            raise Refused(
                f"CI is not green for {version} ({commit.sha[:7]}): {detail}.",
                action="deploy",
                target=svc.name,
                environment=env.name,
                reason="checks",
            )
        return commit.sha, commit.date, f"green ({commit.sha[:7]})"

    async def changelog(self, svc: Service, running: str | None, version: str) -> list[str]:
        scm, limit = self.engine.scm, self.config.deploys.changelog_limit
        if scm is None or not svc.github_repo or not running or limit == 0:
            return []
        try:
            commits, total = await scm.compare(svc.github_repo, tag_of(running), version, limit)
        except Exception:
            log.info("no changelog", extra={"service": svc.name}, exc_info=True)
            return []
        lines = [f"`{c.sha[:7]}` {c.message} ({c.author})" for c in commits]
        if total > len(commits):
            lines.append(f"… and {total - len(commits)} more")
        return lines


def plan_text(plan: Plan, svc: Service) -> str:
    steps = {
        "rolling": "rolling update of the primary",
        "canary": "canary "
        + " → ".join(f"{s.weight}%" for s in svc.deploy.canary_steps)
        + " → promote",
        "bluegreen": "new slot, analysis on preview traffic, switch the Service",
    }
    lines = [
        f"{'Dry run: would deploy' if plan.dry_run else 'Deploy'} {plan.service} "
        f"`{plan.running or '?'}` → `{plan.version}` to {plan.environment}",
        f"• image: {plan.image}",
        f"• strategy: {steps[plan.strategy]}",
        f"• analysis: {'yes' if svc.deploy.analysis else 'none configured'}",
        f"• checks: {plan.checks}",
        f"• approval: {'needed from another approver' if plan.approval_needed else 'not needed'}",
    ]
    if plan.changelog:
        lines.append(f"• {len(plan.changelog)} change(s)")
    return "\n".join(lines)
