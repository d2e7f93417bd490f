"""Time as a dependency.

Everything that decides "is it due yet" asks a Clock, so tests can move time
(DST hand-offs, escalation delays) without sleeping.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that only moves when told to; sleeping yields to the loop."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        self._now = when

    async def sleep(self, seconds: float) -> None:
        # Real loops poll with short sleeps; let them run without moving time.
        await asyncio.sleep(min(seconds, 0.01))


def utcnow() -> datetime:
    return datetime.now(UTC)


class OffsetClock:
    """Real time plus an offset a test can move forward: rate limiters and
    timeouts keep working in real time while an escalation delay of minutes
    is skipped with `advance`."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._offset)

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
