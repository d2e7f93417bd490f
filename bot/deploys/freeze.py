"""Freeze windows: fixed ranges, or recurring ones (a cron start in a named
time zone, lasting a duration), evaluated in that zone's wall-clock time."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from bot.core.config import Config, FreezeWindow


def window_end(window: FreezeWindow, now: datetime) -> datetime | None:
    """When the window that contains `now` ends, or None if it is not active."""
    if window.start is not None and window.end is not None:
        return window.end if window.start <= now < window.end else None
    assert window.cron is not None and window.duration is not None
    local_now = now.astimezone(ZoneInfo(window.timezone))
    # The latest start at or before now (cron is read in local time, so a
    # "Saturday 00:00" freeze starts at local midnight on either side of DST).
    last_start: datetime = croniter(window.cron, local_now).get_prev(datetime)
    if croniter.match(window.cron, local_now.replace(second=0, microsecond=0)):
        last_start = local_now.replace(second=0, microsecond=0)
    end = last_start + window.duration
    return end if last_start <= local_now < end else None


def active_freeze(
    config: Config, environment: str, now: datetime
) -> tuple[FreezeWindow, datetime] | None:
    for window in config.freeze_windows:
        if "*" not in window.environments and environment not in window.environments:
            continue
        end = window_end(window, now)
        if end is not None:
            return window, end
    return None
