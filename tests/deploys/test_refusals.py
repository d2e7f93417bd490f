"""Every refusal has a clear message and an audit entry, and changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import col, select

from bot.core.models import AuditEntry
from bot.deploys.models import ScaleEvent
from tests.deploys.conftest import DeployBot, release


async def refusals(b: DeployBot) -> list[tuple[str, str, str | None]]:
    async with b.bot.db.transaction() as s:
        rows = (
            await s.exec(
                select(AuditEntry)
                .where(AuditEntry.outcome == "refused")
                .order_by(col(AuditEntry.id))
            )
        ).all()
    return [(r.actor, r.detail["reason"], r.environment) for r in rows]


async def test_each_refusal_is_explained_and_audited(deploy_bot: DeployBot) -> None:
    b = deploy_bot
    release(b.github, "example-shop/cart", "v4-red", green=False)
    cases = [
        ("/deploy", "payments v2", "UALICE", "There is no service 'payments'"),
        ("/deploy", "cart v2 to qa", "UALICE", "cart has no environment 'qa'"),
        (
            "/deploy",
            "cart v2 to production",
            "UCAROL",
            "You need the deployer role in production to deploy (you have viewer).",
        ),
        ("/deploy", "cart v9 to staging", "UALICE", "v9 does not exist in example-shop/cart."),
        ("/deploy", "cart v4-red to staging", "UALICE", "CI is not green for v4-red"),
        ("/scale", "cart 20 in staging", "UALICE", "cart runs between 2 and 8 replicas"),
        ("/deploy", "cart v1 to staging", "UALICE", "cart already runs v1 in staging; nothing"),
    ]
    for command, text, user, expected in cases:
        answer = await b.say(command, text, user=user)
        assert expected in answer, (text, answer)
    # Locked by someone else.
    assert "Locked cart in staging" in await b.say(
        "/lock", "cart staging db migration", user="UALICE"
    )
    answer = await b.say("/deploy", "cart v2 to staging", user="UCAROL")
    assert "locked by <@UALICE>: db migration" in answer
    assert "already locked by <@UALICE>" in await b.say("/lock", "cart staging mine", user="UCAROL")
    await b.say("/unlock", "cart staging", user="UALICE")
    # Scaling within the cooldown.
    assert "from 2 to 3" in await b.say("/scale", "cart 3 in staging", user="UCAROL")
    answer = await b.say("/scale", "cart 4 in staging", user="UCAROL")
    assert "cooldown is 2m" in answer and "Try again in" in answer
    reasons = [r[1] for r in await refusals(b)]
    assert reasons == [
        "unknown_service",
        "unknown_environment",
        "forbidden",
        "missing_ref",
        "checks",
        "bounds",
        "locked",
        "locked",
        "cooldown",
    ]
    assert b.image("cart") == "registry.example.com/shop/cart:v1"
    async with b.bot.db.transaction() as s:
        assert len((await s.exec(select(ScaleEvent))).all()) == 1


async def test_freeze_windows_refuse_unless_an_admin_forces_with_a_reason(
    deploy_bot: DeployBot,
) -> None:
    b = deploy_bot
    window = b.bot.config.freeze_windows[0]
    now = datetime.now(UTC)
    # Move the test's fixed window around now.
    object.__setattr__(window, "start", now - timedelta(hours=1))
    object.__setattr__(window, "end", now + timedelta(hours=1))
    answer = await b.say("/deploy", "cart v2 to production", user="UBOB")
    assert "production is frozen until" in answer and "Launch day" in answer
    answer = await b.say("/deploy", "cart v2 to production --force", user="UBOB")
    assert "admin role in production" in answer
    answer = await b.say("/deploy", "cart v2 to production --force", user="UALICE")
    assert "needs a reason" in answer
    answer = await b.say(
        "/deploy", 'cart v2 to production --force reason="hotfix for outage"', user="UALICE"
    )
    assert "waiting for approval" in answer
    d = await b.latest()
    assert d.forced_reason is not None and "hotfix for outage" in d.forced_reason
    reasons = [r[1] for r in await refusals(b)]
    assert reasons == ["freeze", "forbidden", "freeze_no_reason"]
