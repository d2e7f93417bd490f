"""The audit log: every change, refusal and failure, with who, what, where, when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.models import AuditEntry

Outcome = Literal["ok", "refused", "error", "requested"]


@dataclass(frozen=True)
class Actor:
    """Who asked, from where, over which transport: what every audit entry
    and every operation people start carries."""

    user: str
    channel: str | None = None
    transport: str = "unknown"


async def record(
    session: AsyncSession,
    *,
    at: datetime,
    actor: str,
    action: str,
    outcome: Outcome,
    target: str | None = None,
    environment: str | None = None,
    channel: str | None = None,
    transport: str = "unknown",
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an entry in the caller's transaction, so it commits with the change."""
    entry = AuditEntry(
        at=at,
        actor=actor,
        action=action,
        outcome=outcome,
        target=target,
        environment=environment,
        channel=channel,
        transport=transport,
        detail=detail or {},
    )
    session.add(entry)
    return entry


async def by(
    session: AsyncSession,
    actor: Actor,
    *,
    at: datetime,
    action: str,
    target: str | None = None,
    environment: str | None = None,
    detail: dict[str, Any] | None = None,
    outcome: Outcome = "ok",
) -> AuditEntry:
    """Record what `actor` did (the common case of `record`)."""
    return await record(
        session,
        at=at,
        actor=actor.user,
        action=action,
        outcome=outcome,
        target=target,
        environment=environment,
        channel=actor.channel,
        transport=actor.transport,
        detail=detail,
    )


async def recent(
    session: AsyncSession,
    *,
    limit: int = 20,
    action: str | None = None,
    target: str | None = None,
) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
    if action:
        query = query.where(AuditEntry.action == action)
    if target:
        query = query.where(AuditEntry.target == target)
    return list((await session.exec(query)).all())
