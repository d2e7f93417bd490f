"""/deploy /rollback /scale /deploys /lock /unlock /drift, and their buttons."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.core.audit import Actor
from bot.core.chat import ActionContext, CommandContext, Reply, Section, reply
from bot.core.errors import ChatOpsError
from bot.core.grammar import Parsed
from bot.deploys.operations import DeployOperations
from bot.deploys.preflight import plan_text
from bot.deploys.service import DeployService

if TYPE_CHECKING:
    from bot.app import BotApp

STRATEGY = "strategy=<strategy:rolling|canary|bluegreen>"


def _who(ctx: CommandContext | ActionContext) -> Actor:
    return Actor(ctx.user_id, ctx.channel_id, ctx.transport)


def _id(value: str) -> int:
    try:
        return int(value.lstrip("#"))
    except ValueError:
        raise ChatOpsError(f"'{value}' is not a deploy number.") from None


def register(bot: BotApp, deploys: DeployService, ops: DeployOperations) -> None:
    r = bot.registry
    channel = bot.config.channels.deploys

    @r.command(
        f"/deploy <service> <version> [to <env>] [{STRATEGY}] [--dry-run] [--force] "
        "[reason=<reason>]",
        "Deploy a version (protected environments need approval)",
        family_summary="Deploy, and see what is deployed",
    )
    async def deploy(ctx: CommandContext, a: Parsed) -> Reply:
        plan = await deploys.request(
            _who(ctx),
            a.get("service"),
            a.get("version"),
            a.get("env"),
            a.get("strategy"),
            dry_run=a.flag("dry-run"),
            force=a.flag("force"),
            reason=a.get("reason"),
        )
        svc = bot.config.service(plan.service)
        assert svc is not None
        text = plan_text(plan, svc)
        if plan.dry_run:
            return reply(text + "\nNothing was changed.")
        follow = "waiting for approval" if plan.approval_needed else "started"
        return reply(f"Deploy #{plan.deployment_id} {follow}; follow it in #{channel}.\n{text}")

    @r.command("/deploy status <service> [<env>]", "What runs now and what is in progress")
    async def status(ctx: CommandContext, a: Parsed) -> Reply:
        lines = await ops.status(a.get("service"), a.get("env"))
        return reply("\n".join(lines), Section(text="\n".join(lines)))

    @r.command(
        "/rollback <service> [in <env>] [to <version>]",
        "Back to the last good version now: no steps, no analysis",
    )
    async def rollback(ctx: CommandContext, a: Parsed) -> Reply:
        d = await deploys.rollback(_who(ctx), a.get("service"), a.get("env"), a.get("version"))
        return reply(
            f"Rollback #{d.id}: {d.service} in {d.environment} back to `{d.version}` "
            f"(from `{d.previous_version}`); follow it in #{channel}.",
            public=False,
        )

    @r.command(
        "/scale <service> <replicas:int> [in <env>]",
        "Set the number of replicas, within the service's bounds",
    )
    async def scale(ctx: CommandContext, a: Parsed) -> Reply:
        return reply(await ops.scale(_who(ctx), a.get("service"), a.get("replicas"), a.get("env")))

    @r.command("/deploys [<service>] [<env>]", "Recent deploys and rollbacks")
    async def history(ctx: CommandContext, a: Parsed) -> Reply:
        rows = await ops.history(a.get("service"), a.get("env"))
        if not rows:
            return reply("No deploys yet.")
        lines = []
        for d in rows:
            took = ""
            if d.finished_at:
                took = (
                    f" in {int((d.finished_at - (d.started_at or d.created_at)).total_seconds())}s"
                )
            kind = "rollback" if d.kind == "rollback" else d.strategy
            lines.append(
                f"#{d.id} {d.service} `{d.version}` → {d.environment} ({kind}) "
                f"{d.state}{took} — <@{d.requested_by}>, "
                f"{d.created_at:%Y-%m-%d %H:%M}"
            )
        return reply("\n".join(lines), Section(text="\n".join(lines)))

    @r.command(
        "/lock <service> <env> <reason...> [--force]",
        "Stop others deploying (admins may take over a lock with --force)",
    )
    async def lock(ctx: CommandContext, a: Parsed) -> Reply:
        return reply(
            await ops.lock(
                _who(ctx), a.get("service"), a.get("env"), a.get("reason"), a.flag("force")
            )
        )

    @r.command("/unlock <service> <env>", "Release a lock")
    async def unlock(ctx: CommandContext, a: Parsed) -> Reply:
        return reply(await ops.unlock(_who(ctx), a.get("service"), a.get("env")))

    @r.command("/drift [<service>] [<env>]", "Compare what the bot last applied with what runs now")
    async def drift(ctx: CommandContext, a: Parsed) -> Reply:
        found = await ops.drift(a.get("service"), a.get("env"))
        if not found:
            return reply("Nothing to compare yet: the bot has not applied anything.")
        lines = [
            f"{d.service} in {d.environment}: "
            + ("; ".join(d.differences) if d.differences else "no drift")
            for d in found
        ]
        return reply("\n".join(lines))

    @r.command("/drift fix [<service>] [<env>]", "Re-apply what the bot last applied")
    async def drift_fix(ctx: CommandContext, a: Parsed) -> Reply:
        fixed = await ops.fix_drift(_who(ctx), a.get("service"), a.get("env"))
        return reply("Re-applied:\n" + "\n".join(fixed) if fixed else "No drift to fix.")

    @r.action("deploy_approve")
    async def approve(actx: ActionContext) -> Reply | None:
        d = await deploys.approve(_who(actx), _id(actx.value))
        return reply(f"Approved deploy #{d.id}.")

    @r.action("deploy_reject")
    async def reject(actx: ActionContext) -> Reply | None:
        d = await deploys.reject(_who(actx), _id(actx.value))
        return reply(f"Rejected deploy #{d.id}.")

    @r.action("deploy_promote")
    async def promote(actx: ActionContext) -> Reply | None:
        d = await deploys.promote(_who(actx), _id(actx.value))
        return reply(f"Promoting deploy #{d.id} past the inconclusive analysis.")

    @r.action("deploy_abort")
    async def abort(actx: ActionContext) -> Reply | None:
        d = await deploys.abort(_who(actx), _id(actx.value))
        return reply(f"Aborting deploy #{d.id}: rolling back.")
