"""The DORA four for deployments: deployment frequency, lead time for changes,
change failure rate and time to restore.

Definitions (a deploy is a Deployment row of kind "deploy"; a rollback one of
kind "rollback"; "the window" is [now - days, now]):

- **Deployment frequency**: deploys that ended Completed with finished_at in
  the window, divided by the window's length in days (times 7 per week).
- **Lead time for changes**: for each of those, finished_at - commit_time (the
  commit's time from GitHub); the median and the 0.9-quantile. Deploys with
  no known commit time are left out.
- **Change failure rate**: failed changes / changes. A *change* is a deploy
  that started (started_at is set: it touched the cluster) and ended
  Completed, RolledBack or Failed with finished_at in the window. A change
  *failed* when
  (a) it ended RolledBack or Failed itself (automatic rollback, an aborted
      rollout, or superseded by /rollback), or
  (b) it completed and was rolled back afterwards: a rollback of its service
      and environment was requested after its finish while its version was
      still the one serving (every deploy started in between had already
      been rolled back by itself; one that ended Failed may have left its
      own version running, so the rollback is its), or
  (c) an incident on its service was detected within `failure_window` after
      its finish. Incidents carry no environment, so (c) applies only to
      deploys in the production-like environments (`incident_environments`).
- **Time to restore**, per failed change, from when the failure began to when
  service was restored; reported as the median over restored changes, and
  failed changes not restored yet are counted apart.
  Began: (a) the deploy's started_at (its rollout reached users), else
  (b) its finished_at, else (c) the earliest such incident's detected_at —
  whichever applies first.
  Restored: the earliest of these at or after it began: the deploy's own
  finish when the bot rolled it back by itself (RolledBack with no /rollback
  requested while it ran); the finish of the first rollback of that service
  and environment that succeeded; the finish of the next completed deploy
  there (a roll-forward fix); the mitigation (else resolution) of an
  incident counted in (c).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.deploys.models import DeployState
from bot.reports.stats import IncidentRow, Window, quantile, seconds_between

_CHANGE_ENDINGS = (DeployState.COMPLETED, DeployState.ROLLED_BACK, DeployState.FAILED)
_UNDONE = (DeployState.ROLLED_BACK, DeployState.FAILED)


@dataclass(frozen=True)
class DeployRow:
    id: int
    kind: str  # deploy | rollback
    service: str
    environment: str
    state: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    commit_time: datetime | None = None


@dataclass(frozen=True)
class FailedChange:
    deploy_id: int
    service: str
    environment: str
    reasons: tuple[str, ...]  # "ended RolledBack", "rolled back afterwards", "INC-7", ...
    failed_at: datetime
    restored_at: datetime | None

    @property
    def restore_seconds(self) -> float | None:
        if self.restored_at is None:
            return None
        return seconds_between(self.failed_at, self.restored_at)


@dataclass(frozen=True)
class DoraFigures:
    window_days: float
    deployments: int = 0  # completed in the window
    lead_times: tuple[float, ...] = ()  # seconds, one per completed deploy with a commit time
    changes: int = 0
    failures: tuple[FailedChange, ...] = field(default_factory=tuple)

    @property
    def per_day(self) -> float:
        return self.deployments / self.window_days if self.window_days else 0.0

    @property
    def per_week(self) -> float:
        return self.per_day * 7

    @property
    def lead_time_median(self) -> float | None:
        return quantile(self.lead_times, 0.5)

    @property
    def lead_time_p90(self) -> float | None:
        return quantile(self.lead_times, 0.9)

    @property
    def change_failure_ratio(self) -> float | None:
        return len(self.failures) / self.changes if self.changes else None

    @property
    def restore_times(self) -> list[float]:
        return [s for f in self.failures if (s := f.restore_seconds) is not None]

    @property
    def restore_median(self) -> float | None:
        return quantile(self.restore_times, 0.5)

    @property
    def unrestored(self) -> int:
        return sum(1 for f in self.failures if f.restored_at is None)


@dataclass
class _Timeline:
    """What happened to one service in one environment, as sorted times."""

    rollbacks_requested: list[datetime] = field(default_factory=list)
    rollbacks_done: list[datetime] = field(default_factory=list)  # finishes that succeeded
    deploy_completions: list[datetime] = field(default_factory=list)
    # Deploys that reached the cluster, by start: (started_at, finished_at, state).
    started: list[tuple[datetime, datetime | None, str]] = field(default_factory=list)

    def displaced(self, since: datetime, until: datetime) -> bool:
        """Whether a deploy started in [since, until) was serving, or rolling
        out, at `until`: only one that ended RolledBack before then surely
        left the earlier version in place."""
        i = bisect_left(self.started, since, key=lambda s: s[0])
        for started, finished, state in self.started[i:]:
            if started >= until:
                break
            gone = state == DeployState.ROLLED_BACK and finished is not None and finished < until
            if not gone:
                return True
        return False


def _timelines(deploys: Sequence[DeployRow]) -> dict[tuple[str, str], _Timeline]:
    lines: dict[tuple[str, str], _Timeline] = defaultdict(_Timeline)
    for d in deploys:
        line = lines[(d.service, d.environment)]
        if d.kind == "rollback":
            line.rollbacks_requested.append(d.created_at)
            # A rollback that worked ends RolledBack (the engine's success state for it).
            if d.state == DeployState.ROLLED_BACK and d.finished_at is not None:
                line.rollbacks_done.append(d.finished_at)
            continue
        if d.started_at is not None:
            line.started.append((d.started_at, d.finished_at, d.state))
        if d.state == DeployState.COMPLETED and d.finished_at is not None:
            line.deploy_completions.append(d.finished_at)
    for line in lines.values():
        line.rollbacks_requested.sort()
        line.rollbacks_done.sort()
        line.deploy_completions.sort()
        line.started.sort(key=lambda s: s[0])
    return lines


def _first_from(times: list[datetime], at: datetime) -> datetime | None:
    """The first time ≥ at."""
    i = bisect_left(times, at)
    return times[i] if i < len(times) else None


def _first_after(times: list[datetime], at: datetime) -> datetime | None:
    """The first time > at."""
    i = bisect_right(times, at)
    return times[i] if i < len(times) else None


def _incidents_by_service(incidents: Sequence[IncidentRow]) -> dict[str, list[IncidentRow]]:
    by_service: dict[str, list[IncidentRow]] = defaultdict(list)
    for inc in incidents:
        if inc.service:
            by_service[inc.service].append(inc)
    for rows in by_service.values():
        rows.sort(key=lambda i: i.detected_at)
    return by_service


def _judge(
    d: DeployRow,
    line: _Timeline,
    incidents: list[IncidentRow],
    failure_window: timedelta,
) -> FailedChange | None:
    """Whether change `d` failed, and when it began and was restored."""
    assert d.started_at is not None and d.finished_at is not None
    reasons: list[str] = []
    began: list[datetime] = []
    restored: list[datetime] = []
    if d.state in _UNDONE:
        reasons.append(f"ended {d.state}")
        began.append(d.started_at)
        asked = _first_from(line.rollbacks_requested, d.started_at)
        superseded = asked is not None and asked <= d.finished_at
        # Rolled back by the bot itself: its own finish is the old version serving
        # again. Superseded by /rollback, that rollback's finish is (found below).
        if d.state == DeployState.ROLLED_BACK and not superseded:
            restored.append(d.finished_at)
    else:
        asked = _first_from(line.rollbacks_requested, d.finished_at)
        if asked is not None and not line.displaced(d.finished_at, asked):
            reasons.append("rolled back afterwards")
            began.append(d.finished_at)
    if incidents:
        detected = [i.detected_at for i in incidents]
        low = bisect_left(detected, d.finished_at)
        high = bisect_right(detected, d.finished_at + failure_window)
        for inc in incidents[low:high]:
            reasons.append(f"INC-{inc.id}")
            began.append(inc.detected_at)
            if inc.restored_at is not None:
                restored.append(inc.restored_at)
    if not reasons:
        return None
    failed_at = min(began)
    for candidate in (
        _first_from(line.rollbacks_done, failed_at),
        _first_after(line.deploy_completions, d.finished_at),
    ):
        if candidate is not None:
            restored.append(candidate)
    after = [t for t in restored if t >= failed_at]
    return FailedChange(
        deploy_id=d.id,
        service=d.service,
        environment=d.environment,
        reasons=tuple(reasons),
        failed_at=failed_at,
        restored_at=min(after) if after else None,
    )


def dora_figures(
    deploys: Sequence[DeployRow],
    incidents: Sequence[IncidentRow],
    window: Window,
    *,
    failure_window: timedelta,
    incident_environments: Collection[str],
) -> DoraFigures:
    """The four figures over every deploy given, together (filter by service
    and environment before). `deploys` must include the rollbacks and later
    deploys that follow those finishing in the window, and `incidents` those
    detected after them."""
    lines = _timelines(deploys)
    by_service = _incidents_by_service(incidents)
    completed = 0
    lead_times: list[float] = []
    changes = 0
    failures: list[FailedChange] = []
    for d in sorted(deploys, key=lambda row: row.id):
        if d.kind != "deploy" or d.finished_at not in window or d.state not in _CHANGE_ENDINGS:
            continue
        assert d.finished_at is not None  # `in window` holds only for a time
        if d.state == DeployState.COMPLETED:
            completed += 1
            if d.commit_time is not None:
                lead_times.append(seconds_between(d.commit_time, d.finished_at))
        if d.started_at is None:
            continue  # never reached the cluster: not a change
        changes += 1
        related = by_service.get(d.service, []) if d.environment in incident_environments else []
        failure = _judge(d, lines[(d.service, d.environment)], related, failure_window)
        if failure is not None:
            failures.append(failure)
    return DoraFigures(
        window_days=window.days,
        deployments=completed,
        lead_times=tuple(lead_times),
        changes=changes,
        failures=tuple(failures),
    )


def dora_by_target(
    deploys: Sequence[DeployRow],
    incidents: Sequence[IncidentRow],
    window: Window,
    *,
    failure_window: timedelta,
    incident_environments: Collection[str],
) -> dict[tuple[str, str], DoraFigures]:
    """dora_figures per (service, environment) that has any deploy."""
    groups: dict[tuple[str, str], list[DeployRow]] = defaultdict(list)
    for d in deploys:
        groups[(d.service, d.environment)].append(d)
    return {
        key: dora_figures(
            rows,
            incidents,
            window,
            failure_window=failure_window,
            incident_environments=incident_environments,
        )
        for key, rows in sorted(groups.items())
    }
