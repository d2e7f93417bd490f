"""Runbooks run from chat and from incidents, on the sandbox cluster, reached
the way production reaches the bot: signed slash commands and button presses,
Alertmanager JSON on the webhook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import col, select

from bot.core.models import AuditEntry
from bot.incidents.models import IncidentEvent
from sandbox.resources import DEPLOYMENTS
from tests.conftest import eventually
from tests.deploys.conftest import DeployBot
from tests.incidents.conftest import alert, notification, post
from tests.runbooks.conftest import buttons, runs, steps, wait_for_series, wait_run


async def audit_log(b: DeployBot) -> list[tuple[str, str, str | None, str]]:
    async with b.bot.db.transaction() as s:
        rows = (await s.exec(select(AuditEntry).order_by(col(AuditEntry.id)))).all()
    return [(r.actor, r.action, r.target, r.outcome) for r in rows]


def cluster_state(b: DeployBot) -> list[Any]:
    return sorted(
        (
            d["metadata"]["namespace"],
            d["metadata"]["name"],
            d["metadata"].get("generation"),
            d["spec"],
        )
        for d in b.cluster.store.list(DEPLOYMENTS)
    )


async def test_high_error_rate_from_an_incident_thread(deploy_bot: DeployBot) -> None:
    b = deploy_bot
    await b.say("/deploy", "cart v2-bad to staging", user="UCAROL")
    bad = await b.latest()
    await b.wait_state(bad.id or 0, "Completed", timeout=40)
    assert (b.image("cart") or "").endswith(":v2-bad")

    # The alert opens an incident; its labels fill the runbook's parameters.
    firing = alert("HighErrorRate", service="cart", environment="staging", window="3s")
    status, _ = await post(b, notification([firing], group_key='{}:{alertname="HighErrorRate"}'))
    assert status == 200
    await eventually(lambda: bool(buttons(b.slack, "runbook_start")), timeout=10)
    [offer] = buttons(b.slack, "runbook_start")
    assert offer["value"] == "high-error-rate:1"

    await b.requests.action("runbook_start", offer["value"], user="UCAROL")
    run = await wait_run(b, 1, "Waiting for approval", "Failed")
    assert run.status == "Waiting for approval", run.error
    assert run.params["service"] == "cart" and run.params["window"] == "3s"
    [measured, _report] = await steps(b.bot.db, 1)
    assert measured.output["value"] >= 0.05  # 30% of v2-bad's answers are errors

    # Four eyes: the person who started the run cannot approve it.
    await b.requests.action("runbook_approve", f"{run.id}:2", user="UCAROL")
    await eventually(
        lambda: _has(b, ("UCAROL", "approve_runbook_step", "high-error-rate", "refused"))
    )
    assert (await wait_run(b, 1, "Waiting for approval")).step == 2
    await b.requests.action("runbook_approve", f"{run.id}:2", user="UBOB")

    run = await wait_run(b, 1, "Succeeded", "Failed", timeout=60)
    assert run.status == "Succeeded", run.error
    assert (b.image("cart") or "").endswith(":v1")
    records = await steps(b.bot.db, 1)
    assert [(r.name, r.status) for r in records] == [
        ("measure", "ok"),
        ("report", "ok"),
        ("approve the fix", "ok"),
        ("roll back", "ok"),
        ("restart", "skipped"),
        ("wait for recovery", "ok"),
        ("verify", "ok"),
    ]
    assert records[2].output == {"approved_by": "UBOB"}
    assert records[3].inputs == {"service": "cart", "environment": "staging"}
    assert records[6].output["value"] < 0.05
    assert all(r.finished_at >= r.started_at for r in records)

    async with b.bot.db.transaction() as s:
        events = (
            await s.exec(
                select(IncidentEvent)
                .where(IncidentEvent.kind == "runbook")
                .order_by(col(IncidentEvent.id))
            )
        ).all()
    text = "\n".join(e.text for e in events)
    for record in records:
        assert f"{record.name} {record.status}" in text
    assert "started by <@UCAROL>" in events[0].text and "succeeded" in events[-1].text

    log = await audit_log(b)
    assert ("UCAROL", "runbook.start", "high-error-rate", "ok") in log
    assert ("UCAROL", "rollback", "cart", "ok") in log  # through the /rollback path
    assert ("UBOB", "runbook.step", "high-error-rate", "ok") in log

    # Progress is one message edited in place: the last edit shows the outcome.
    await b.delivered()
    edits = [
        c for c in b.slack.calls("chat.update", ok=True) if "High error rate" in c.body["text"]
    ]
    assert "Succeeded" in edits[-1].body["text"]


async def _has(b: DeployBot, entry: tuple[str, str, str, str]) -> bool:
    return entry in await audit_log(b)


async def test_dry_run_changes_nothing(deploy_bot: DeployBot) -> None:
    b = deploy_bot
    before_cluster, before_audit = cluster_state(b), await audit_log(b)
    for text in (
        "high-error-rate service=cart environment=staging --dry-run",
        "pod-crash-loop --dry-run service=checkout environment=staging",
        "high-latency service=search environment=staging add=3",
    ):
        if "--dry-run" not in text:
            text += " --dry-run"
        said = await b.say("/runbook", "run " + text, user="UCAROL")
        assert "Nothing was run or changed." in said, said
    said = await b.say("/runbook", "run pod-crash-loop service=cart --dry-run", user="UCAROL")
    assert "kubectl" in said and "shop-production" in said and "--selector" in said
    assert await runs(b.bot.db) == []
    assert cluster_state(b) == before_cluster
    assert await audit_log(b) == before_audit


async def test_bad_parameters_are_explained(deploy_bot: DeployBot) -> None:
    b = deploy_bot
    said = await b.say("/runbook", "run high-error-rate", user="UCAROL")
    assert "service is required" in said
    said = await b.say("/runbook", "run high-error-rate service=web threshold=x", user="UCAROL")
    assert "service must be one of checkout, cart, search" in said
    assert "threshold must be a number" in said
    said = await b.say("/runbook", "run high-error-rate service=cart region=eu", user="UCAROL")
    assert "'region' is not a parameter" in said
    said = await b.say("/runbook", "run nope", user="UCAROL")
    assert "There is no runbook 'nope'" in said and "high-latency" in said
    said = await b.say("/runbook", "run high-error-rate service=cart", user="UDAVE")
    assert "You need the deployer role" in said  # it can roll back: deployers only
    assert await runs(b.bot.db) == []


async def test_unlisted_shell_command_is_refused_before_the_run(deploy_bot: DeployBot) -> None:
    b = deploy_bot
    said = await b.say("/runbook", "run unlisted-shell", user="UCAROL")
    assert "did not load, so it cannot run" in said
    assert "'bash' is not on the shell allowlist" in said
    assert await runs(b.bot.db) == []


MARKERS = (Path("/tmp/chatops-pwned"), Path("/tmp/chatops-pwned2"))


def _clear(paths: tuple[Path, ...]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


async def test_shell_arguments_are_passed_literally(deploy_bot: DeployBot) -> None:
    b = deploy_bot
    _clear(MARKERS)
    # A shell step acts in the run's environment: UCAROL deploys to staging only.
    said = await b.say("/runbook", "run literal-args environment=production", user="UCAROL")
    assert "You need the deployer role in production" in said
    said = await b.say("/runbook", "run literal-args", user="UCAROL")
    assert "Started run #1" in said
    run = await wait_run(b, 1, "Succeeded", "Failed")
    assert run.status == "Succeeded", run.error
    [echo] = await steps(b.bot.db, 1)
    assert echo.output["stdout"] == (
        "$(touch /tmp/chatops-pwned); echo hi | cat > /tmp/chatops-pwned2 && `id`|;|&&|*|"
    )
    assert echo.output["exit_code"] == 0
    assert not any(p.exists() for p in MARKERS)  # nothing ran through a shell


async def test_reject_and_cancel(deploy_bot: DeployBot) -> None:
    b = deploy_bot
    # With no traffic measured yet, p99 is None and the approval is skipped.
    await wait_for_series(
        b.cluster.prometheus_url,
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket"
        '{namespace="shop-staging",service="cart"}[5m])))',
    )
    said = await b.say(
        "/runbook", "run high-latency service=cart environment=staging threshold=0", user="UCAROL"
    )
    assert "Started run #1" in said
    await wait_run(b, 1, "Waiting for approval")
    await b.requests.action("runbook_reject", "1:2", user="UBOB")
    run = await wait_run(b, 1, "Rejected")
    assert "rejected by <@UBOB>" in (run.error or "")
    assert [r.name for r in await steps(b.bot.db, 1)] == ["p99", "replicas", "approve scale-out"]

    said = await b.say("/runbook", "run slow-wait", user="UDAVE")  # read-only: viewers may
    assert "Started run #2" in said
    await eventually(lambda: _in_wait(b, 2))
    said = await b.say("/runbook", "cancel 2", user="UDAVE")
    assert "will stop" in said
    run = await wait_run(b, 2, "Cancelled", timeout=10)
    assert [r.name for r in await steps(b.bot.db, 2)] == ["before"]  # the wait never finished
    said = await b.say("/runbook", "runs", user="UDAVE")
    assert "#2 slow-wait — Cancelled" in said and "#1 high-latency — Rejected" in said


async def _in_wait(b: DeployBot, run_id: int) -> bool:
    return any(r.id == run_id and r.step == 1 and r.step_state for r in await runs(b.bot.db))


async def test_unanswered_approval_times_out(deploy_bot: DeployBot) -> None:
    b = deploy_bot
    assert "Started run #1" in await b.say("/runbook", "run quick-approval", user="UCAROL")
    run = await wait_run(b, 1, "Failed", "Succeeded", timeout=15)
    assert run.status == "Failed" and "no decision within 1s" in (run.error or "")
    assert [(r.name, r.status) for r in await steps(b.bot.db, 1)] == [("ask", "failed")]
    # A late press changes nothing.
    await b.requests.action(
        "runbook_approve", "1:0", user="UBOB", response_url=b.slack.response_url("late")
    )
    [late] = await b.slack.wait_for("response_url", lambda c: c.name == "late")
    assert "Run #1 is not waiting for this approval (Failed)" in late.body["text"]
    await b.delivered()
    assert (await wait_run(b, 1, "Failed")).step == 0


async def test_on_failure_rollback_rolls_the_service_back(deploy_bot: DeployBot) -> None:
    b = deploy_bot
    await b.say("/deploy", "cart v2 to staging", user="UCAROL")
    d = await b.latest()
    await b.wait_state(d.id or 0, "Completed", timeout=40)
    assert "Started run #1" in await b.say("/runbook", "run fail-then-rollback", user="UCAROL")
    run = await wait_run(b, 1, "Failed", "Succeeded")
    assert run.status == "Failed"
    assert "rolling cart back (deploy #" in (run.error or "")
    rollback = await b.latest()
    assert rollback.kind == "rollback" and rollback.requested_by == "UCAROL"
    await b.wait_state(rollback.id or 0, "RolledBack", timeout=40)
    assert (b.image("cart") or "").endswith(":v1")
    assert [r.name for r in await steps(b.bot.db, 1)] == ["impossible"]


async def test_template_values_cannot_become_options(deploy_bot: DeployBot) -> None:
    b = deploy_bot
    said = await b.say("/runbook", "run literal-args text=--kubeconfig=/etc/evil", user="UCAROL")
    assert "Started run #1" in said
    run = await wait_run(b, 1, "Failed", "Succeeded")
    assert run.status == "Failed"
    assert "would be read as an option" in (run.error or "")
