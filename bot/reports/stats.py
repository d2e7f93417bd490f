"""Incident response figures over a window, and the primitives the DORA
figures share: the window, means, quantiles, and which environment counts as
production.

Everything here is pure: rows in, numbers out, so each figure can be checked
to the second against a known history.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.core.config import Config, Service

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Window:
    """The closed interval [start, end] a report covers; `end` is "now"."""

    start: datetime
    end: datetime

    @classmethod
    def last_days(cls, end: datetime, days: int) -> Window:
        return cls(end - timedelta(days=days), end)

    @property
    def days(self) -> float:
        return (self.end - self.start) / DAY

    def __contains__(self, at: datetime | None) -> bool:
        return at is not None and self.start <= at <= self.end


def seconds_between(earlier: datetime, later: datetime) -> float:
    # Clocks of different systems (GitHub, Alertmanager, the bot) can disagree
    # by a little; a negative duration would only drag a mean below the truth.
    return max(0.0, (later - earlier).total_seconds())


def mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def quantile(values: Iterable[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation between closest ranks
    (numpy's default, "inclusive"): the median of [1, 2, 3, 10] is 2.5 and
    its 0.9-quantile is 7.9. None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def production_environments(config: Config) -> list[str]:
    """The production-like environments: the protected ones, or, when none is
    protected, the last one listed (environments are conventionally listed
    from the least to the most important)."""
    protected = [e.name for e in config.environments if e.protected]
    return protected or [config.environments[-1].name]


def default_environment(config: Config, service: Service | None) -> str:
    """Where /stats looks at deployments unless told: the first
    production-like environment (of the service, when one is named)."""
    names = [e.name for e in config.environments]
    if service is not None:
        names = [n for n in names if n in service.environments]
    production = [n for n in production_environments(config) if n in names]
    # A service deployed nowhere production-like: its most important one.
    return production[0] if production else names[-1]


@dataclass(frozen=True)
class IncidentRow:
    id: int
    service: str | None
    severity: str
    detected_at: datetime
    acknowledged_at: datetime | None = None
    mitigated_at: datetime | None = None
    resolved_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    @property
    def restored_at(self) -> datetime | None:
        """When the impact ended: mitigation (e.g. a rollback) restores
        service before the cause is fixed, so it counts when recorded;
        otherwise the resolution."""
        times = [t for t in (self.mitigated_at, self.resolved_at) if t is not None]
        return min(times) if times else None


@dataclass(frozen=True)
class PageRow:
    user: str  # a Slack user id, or a channel for channel targets
    sent_at: datetime


@dataclass(frozen=True)
class IncidentFigures:
    """Incidents detected in the window, by severity, and how fast they were
    handled.

    - MTTA (mean time to acknowledge): the mean of acknowledged_at - detected_at
      over the window's incidents that were acknowledged.
    - MTTR (mean time to resolve): the mean of resolved_at - detected_at over
      the window's incidents that are resolved.
    Incidents not (yet) acknowledged or resolved are left out of the mean and
    counted apart, so an open incident does not hide in a flattering average.
    `open_now` counts every unresolved incident, whenever it was detected.
    """

    by_severity: dict[str, int] = field(default_factory=dict)
    total: int = 0
    open_now: int = 0
    mtta_seconds: float | None = None
    acknowledged: int = 0
    mttr_seconds: float | None = None
    resolved: int = 0


def incident_figures(
    incidents: Sequence[IncidentRow], window: Window, severities: Sequence[str] = ()
) -> IncidentFigures:
    """`severities` are listed (with 0) even when no incident had them."""
    inside = [i for i in incidents if i.detected_at in window]
    counts = Counter(i.severity for i in inside)
    by_severity = {name: counts.get(name, 0) for name in severities}
    by_severity.update({name: n for name, n in sorted(counts.items()) if name not in by_severity})
    ack = [
        seconds_between(i.detected_at, i.acknowledged_at)
        for i in inside
        if i.acknowledged_at is not None
    ]
    res = [
        seconds_between(i.detected_at, i.resolved_at) for i in inside if i.resolved_at is not None
    ]
    return IncidentFigures(
        by_severity=by_severity,
        total=len(inside),
        open_now=sum(1 for i in incidents if i.is_open),
        mtta_seconds=mean(ack),
        acknowledged=len(ack),
        mttr_seconds=mean(res),
        resolved=len(res),
    )


def pages_per_person(pages: Sequence[PageRow], window: Window) -> list[tuple[str, int]]:
    """Pages delivered in the window per person, most paged first (then by
    id, so the order is stable). The caller passes delivered pages only: a
    page held back by the rate limit reached the person inside a bundle page,
    which is counted itself."""
    counts = Counter(p.user for p in pages if p.sent_at in window)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))
