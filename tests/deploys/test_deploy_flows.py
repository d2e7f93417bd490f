"""Deploy flows end to end: signed Slack commands and buttons, the real
kubernetes/PyGithub/prometheus clients, the sandbox cluster and fake GitHub."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlmodel import col, select

from bot.core.models import AuditEntry
from bot.deploys.models import DeployLock, DeployTransition
from sandbox.resources import DEPLOYMENTS, SERVICES
from tests.deploys.conftest import DeployBot


async def test_canary_walks_its_steps_and_completes(deploy_bot: DeployBot, tmp_path: Path) -> None:
    b = deploy_bot
    answer = await b.say("/deploy", "checkout v2 to staging strategy=canary")
    assert "Deploy #1 started" in answer
    d = await b.wait_state(1, "Completed")
    assert b.image("checkout") == "registry.example.com/shop/checkout:v2"
    assert b.image("checkout-canary") == "registry.example.com/shop/checkout:v2"
    canary = b.cluster.get(DEPLOYMENTS, "shop-staging", "checkout-canary")
    assert canary["spec"]["replicas"] == 0
    async with b.bot.db.transaction() as s:
        states = [
            t.to_state
            for t in (
                await s.exec(
                    select(DeployTransition)
                    .where(DeployTransition.deployment_id == 1)
                    .order_by(col(DeployTransition.id))
                )
            ).all()
        ]
    assert states == [
        "RollingOut",
        "HealthGating",
        "RollingOut",
        "HealthGating",
        "Promoting",
        "Completed",
    ]
    assert d.previous_version == "v1" and d.sha is not None
    # kubectl sees what the bot did.
    kubeconfig = b.cluster.write_kubeconfig(tmp_path / "kc")
    # (An async subprocess: the sandbox answering kubectl runs on this loop.)
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        "--kubeconfig",
        str(kubeconfig),
        "-n",
        "shop-staging",
        "get",
        "deploy",
        "checkout",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and out.decode() == "registry.example.com/shop/checkout:v2"
    # One message in #deploys, edited in place; details in its thread.
    await b.delivered()
    top = [m for m in b.slack.messages("C0DEPLOYS") if not m.thread_ts or m.ts == m.thread_ts]
    assert len(top) == 1 and "Completed" in top[0].text and len(top[0].edits) >= 3
    thread = [m.text for m in b.slack.messages("C0DEPLOYS", thread_ts=top[0].ts)]
    assert any("Analysis passed at canary step 1 (25%)" in t for t in thread)
    assert any("Deploy #1 Completed" in t for t in thread)
    assert any("Changes since v1:" in t and "Release v2" in t for t in thread)
    # GitHub: a Deployment: queued, in_progress, then success.
    [gh] = b.github.deployments("example-shop/checkout")
    assert gh.environment == "staging" and gh.ref == "v2"
    assert [s.state for s in b.github.deployment_statuses("example-shop/checkout", gh.id)] == [
        "queued",
        "in_progress",
        "success",
    ]


async def test_a_bad_version_fails_analysis_at_the_first_step(deploy_bot: DeployBot) -> None:
    b = deploy_bot
    await b.say("/deploy", "checkout v2-bad to staging")
    d = await b.wait_state(1, "RolledBack")
    assert b.image("checkout") == "registry.example.com/shop/checkout:v1"  # never touched
    assert b.cluster.get(DEPLOYMENTS, "shop-staging", "checkout-canary")["spec"]["replicas"] == 0
    assert d.error is not None and "canary step 1 (25%)" in d.error
    assert "error-ratio" in d.error and ">= 0.1" in d.error
    await b.delivered()
    top = next(m for m in b.slack.messages("C0DEPLOYS") if "Deploy #1" in m.text)
    thread = "\n".join(m.text for m in b.slack.messages("C0DEPLOYS", thread_ts=top.ts))
    assert ":x: Analysis failed at canary step 1 (25%)" in thread
    assert "error-ratio" in thread and ">= 0.1" in thread
    async with b.bot.db.transaction() as s:
        lock = await s.get(DeployLock, ("checkout", "staging"))
    assert lock is not None and lock.automatic


async def test_a_crashing_rolling_deploy_rolls_back_by_itself_and_locks(
    deploy_bot: DeployBot,
) -> None:
    b = deploy_bot
    await b.say("/deploy", "cart v2-crash to staging")
    d = await b.wait_state(1, "RolledBack", timeout=40)
    assert "ProgressDeadlineExceeded" in (d.error or "") or "exceeded its progress deadline" in (
        d.error or ""
    )
    assert b.image("cart") == "registry.example.com/shop/cart:v1"
    answer = await b.say("/deploy", "cart v3 to staging", user="UCAROL")
    assert "locked by <@chatops-bot>" in answer
    await b.delivered()
    assert "/unlock cart staging" in "\n".join(m.text for m in b.slack.messages("C0DEPLOYS"))


async def test_blue_green_switches_only_when_healthy_and_rolls_back_instantly(
    deploy_bot: DeployBot,
) -> None:
    b = deploy_bot
    await b.say("/deploy", "search v2 to staging")
    seen_selectors = []

    async def selector() -> dict[str, str]:
        svc = b.cluster.get(SERVICES, "shop-staging", "search")
        return dict(svc["spec"]["selector"])

    while (d := await b.deployment(1)).state not in ("Completed", "RolledBack", "Failed"):
        current = await selector()
        if current == {"app": "search-green"}:
            # Once switched, the green slot was fully available.
            green = b.cluster.get(DEPLOYMENTS, "shop-staging", "search-green")
            assert green["status"].get("availableReplicas") == green["spec"]["replicas"]
        seen_selectors.append(current)
        await asyncio.sleep(0.01)
    assert d.state == "Completed"
    assert await selector() == {"app": "search-green"}
    assert {"app": "search"} in seen_selectors  # it waited on the old slot first
    assert b.image("search-green") == "registry.example.com/shop/search:v2"
    # Rollback: the selector moves back at once, no rollout to wait for.
    answer = await b.say("/rollback", "search in staging")
    assert "back to `v1`" in answer
    rb = await b.wait_state(2, "RolledBack", timeout=10)
    assert await selector() == {"app": "search"}
    assert rb.progress["patch_ms"] < 5000


async def test_rollback_after_a_completed_deploy_skips_steps_and_analysis(
    deploy_bot: DeployBot,
) -> None:
    b = deploy_bot
    await b.say("/deploy", "checkout v2 to staging")
    await b.wait_state(1, "Completed")
    b.slack.clear()
    await b.say("/rollback", "checkout in staging", user="UCAROL")
    d = await b.wait_state(2, "RolledBack")
    assert d.kind == "rollback" and d.version == "v1" and d.previous_version == "v2"
    assert b.image("checkout") == "registry.example.com/shop/checkout:v1"
    async with b.bot.db.transaction() as s:
        states = [
            t.to_state
            for t in (
                await s.exec(
                    select(DeployTransition)
                    .where(DeployTransition.deployment_id == 2)
                    .order_by(col(DeployTransition.id))
                )
            ).all()
        ]
        audits = [
            (a.actor, a.action, a.outcome)
            for a in (await s.exec(select(AuditEntry).where(AuditEntry.action == "rollback"))).all()
        ]
    assert states == ["RollingBack", "RolledBack"]  # no canary, no health gate
    assert audits == [("UCAROL", "rollback", "ok")]
    assert "patch_ms" in d.progress


async def test_protected_environment_needs_another_approver_via_buttons(
    deploy_bot: DeployBot,
) -> None:
    b = deploy_bot
    answer = await b.say("/deploy", "cart v2 to production", user="UALICE")
    assert "waiting for approval" in answer
    await b.wait_state(1, "AwaitingApproval")
    # The state is committed before the outbox delivers its message.
    await b.delivered()
    msg = next(m for m in b.slack.messages("C0DEPLOYS") if "Deploy #1" in m.text)
    buttons = [
        e["action_id"]
        for blk in msg.blocks or []
        if blk["type"] == "actions"
        for e in blk["elements"]
    ]
    assert buttons == ["deploy_approve", "deploy_reject"]
    # The requester cannot approve their own deploy.
    await b.requests.action(
        "deploy_approve", "1", user="UALICE", response_url=b.slack.response_url("self")
    )
    [own] = await b.slack.wait_for("response_url", lambda c: c.name == "self")
    assert "cannot approve your own deploy" in own.body["text"]
    # A viewer cannot either.
    await b.requests.action(
        "deploy_approve", "1", user="UCAROL", response_url=b.slack.response_url("viewer")
    )
    [viewer] = await b.slack.wait_for("response_url", lambda c: c.name == "viewer")
    assert "approver role in production" in viewer.body["text"]
    await b.requests.action(
        "deploy_approve", "1", user="UBOB", response_url=b.slack.response_url("ok")
    )
    d = await b.wait_state(1, "Completed")
    assert d.approved_by == "UBOB"
    assert b.image("cart", "production") == "registry.example.com/shop/cart:v2"
    async with b.bot.db.transaction() as s:
        actions = [
            (a.actor, a.action, a.outcome)
            for a in (await s.exec(select(AuditEntry).order_by(col(AuditEntry.id)))).all()
        ]
    assert ("UALICE", "deploy.approve", "refused") in actions
    assert ("UCAROL", "deploy.approve", "refused") in actions
    assert ("UBOB", "deploy.approve", "ok") in actions


async def test_dry_run_changes_nothing(deploy_bot: DeployBot) -> None:
    b = deploy_bot
    answer = await b.say("/deploy", "checkout v2 to staging --dry-run")
    assert "Dry run: would deploy checkout `v1` → `v2` to staging" in answer
    assert "canary 25% → 50% → promote" in answer and "Nothing was changed." in answer
    assert b.image("checkout") == "registry.example.com/shop/checkout:v1"
    assert await b.say("/deploys", "") == "No deploys yet."
    assert b.github.deployments("example-shop/checkout") == []


async def test_inconclusive_analysis_pauses_and_asks_in_the_thread(deploy_bot: DeployBot) -> None:
    b = deploy_bot
    await b.say("/deploy", "checkout v2-meh to staging")
    await b.wait_state(1, "Paused")
    await b.delivered()
    top = next(m for m in b.slack.messages("C0DEPLOYS") if "Deploy #1" in m.text)
    ask = next(
        m
        for m in b.slack.messages("C0DEPLOYS", thread_ts=top.ts)
        if "Analysis inconclusive" in m.text
    )
    buttons = [
        e["action_id"]
        for blk in ask.blocks or []
        if blk["type"] == "actions"
        for e in blk["elements"]
    ]
    assert buttons == ["deploy_promote", "deploy_abort"]
    assert "neither success < 0.05 nor failure >= 0.1 held" in ask.text
    # A person looks and decides to go on: the next step starts.
    await b.requests.action(
        "deploy_promote",
        "1",
        user="UCAROL",
        thread_ts=top.ts,
        response_url=b.slack.response_url("promote"),
    )
    [said] = await b.slack.wait_for("response_url", lambda c: c.name == "promote")
    assert "Promoting deploy #1" in said.body["text"]
    d = await b.wait_state(1, "Paused", "Completed", "RolledBack")
    assert d.state == "Paused" and d.progress["step"] == 1  # inconclusive again, at step 2
    await b.requests.action("deploy_abort", "1", user="UCAROL")
    d = await b.wait_state(1, "RolledBack")
    assert b.image("checkout") == "registry.example.com/shop/checkout:v1"


async def test_drift_is_reported_and_fixed(deploy_bot: DeployBot) -> None:
    b = deploy_bot
    await b.say("/deploy", "cart v2 to staging")
    await b.wait_state(1, "Completed")
    assert await b.say("/drift", "cart staging") == "cart in staging: no drift"
    # Someone changes the cluster behind the bot's back.
    await b.bot.clusters.for_context(None).patch_deployment(
        "shop-staging",
        "cart",
        {
            "spec": {
                "replicas": 5,
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "app", "image": "registry.example.com/shop/cart:hotfix"}
                        ]
                    }
                },
            }
        },
    )
    answer = await b.say("/drift", "cart staging")
    assert (
        "image is registry.example.com/shop/cart:hotfix, the bot last applied "
        "registry.example.com/shop/cart:v2" in answer
    )
    assert "replicas are 5" in answer
    answer = await b.say("/drift", "fix cart staging", user="UCAROL")
    assert answer.startswith("Re-applied:")
    assert b.image("cart") == "registry.example.com/shop/cart:v2"
    assert await b.say("/drift", "cart staging") == "cart in staging: no drift"
