"""Domain events: how one domain reacts to another without importing it.

A service emits an event inside its own transaction; subscribers run in
that same transaction, so a reaction (an incident timeline entry for a
deploy) commits or rolls back together with what caused it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger("chatops.events")


@dataclass(frozen=True)
class DeployFinished:
    """A deploy or rollback reached a final state."""

    deployment_id: int
    kind: str  # deploy | rollback
    service: str
    environment: str
    version: str
    previous_version: str | None
    outcome: str  # Completed | RolledBack | Failed | Rejected
    actor: str
    at: datetime


@dataclass(frozen=True)
class ServiceScaled:
    service: str
    environment: str
    replicas: int
    previous: int | None
    actor: str
    at: datetime


@dataclass(frozen=True)
class IncidentChanged:
    """An incident opened, or its status or severity changed (paging keys on it)."""

    incident_id: int
    change: str  # opened | status | severity
    status: str
    severity: str
    previous: str | None
    actor: str | None
    at: datetime


Subscriber = Callable[[AsyncSession, Any], Awaitable[None]]


class EventHub:
    def __init__(self) -> None:
        self._subscribers: dict[type, list[Subscriber]] = {}

    def subscribe(self, event_type: type, handler: Subscriber) -> None:
        self._subscribers.setdefault(event_type, []).append(handler)

    async def emit(self, session: AsyncSession, event: object) -> None:
        for handler in self._subscribers.get(type(event), []):
            await handler(session, event)
