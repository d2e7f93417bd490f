"""Who is on call: rotation hand-offs, overrides and the shift timeline.

Pure functions, no I/O and no clock reads: every instant is an argument, so
the DST behaviour is testable at exact instants.

Hand-offs are computed in the schedule's local wall-clock time ("09:00 every
day" stays 09:00 across daylight-saving changes), then turned into UTC. Two
kinds of wall-clock time need a rule; both follow "the hand-off happens the
first time the local clock reaches the planned time":

* fold (fall back, 01:30 happens twice): the first occurrence (fold=0).
* gap (spring forward, 02:30 never happens): the end of the gap, 03:00 local,
  when the clock jumps past 02:30. Python's fold=0 reading (02:30 at the old
  offset = 03:30) would collide with the next hand-off of an hourly rotation;
  the end of the gap always stays between its neighbours.

A shift starting on a gap's first hour (02:00 on an hourly rotation) lands on
the next hand-off: it lasts no time and is left out (its hour does not exist).

Nobody is on call before `rotation.start` (hand-off k=0): there is no history
to extrapolate, so earlier instants get None, not whoever a negative k picks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from bot.core.config import Rotation, Schedule
from bot.core.durations import parse_duration


@dataclass(frozen=True)
class Override:
    """`user` replaces whoever is on call in [start, end); layer None = every layer."""

    user: str
    start: datetime
    end: datetime
    layer: str | None = None


@dataclass(frozen=True)
class Shift:
    """`user` is on call on `layer` in [start, end); override: from an Override."""

    user: str
    start: datetime
    end: datetime
    layer: str
    override: bool = False


def _aware(value: datetime, what: str) -> datetime:
    # Mixing naive and aware datetimes fails deep inside with a bare TypeError.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {value.isoformat()}")
    return value.astimezone(UTC)


def to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """A naive local wall-clock time in `tz` as an aware UTC instant (fold:
    first occurrence; gap: the end of the gap, see the module docstring)."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first  # exists; for an ambiguous time fold=0 is the first occurrence
    # In a gap zoneinfo applies the offset from before the jump for fold=0
    # (an instant after the jump) and the one from after it for fold=1 (an
    # instant before the jump): the jump lies between, find it to the second
    # (tz transitions fall on whole seconds).
    lo = math.floor(wall.replace(tzinfo=tz, fold=1).timestamp())
    hi = math.ceil(first.timestamp())
    after = datetime.fromtimestamp(hi, tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _handoff(rotation: Rotation, tz: ZoneInfo, k: int) -> datetime:
    # Naive datetime arithmetic is wall-clock arithmetic: exactly what keeps
    # the hand-off at the same local time whatever the UTC offset does.
    return to_utc(rotation.start + k * rotation.shift, tz)


def _index(rotation: Rotation, tz: ZoneInfo, at: datetime) -> int:
    """k of the shift containing `at` (h(k) <= at < h(k+1)); -1 before the start."""
    if at < _handoff(rotation, tz, 0):
        return -1
    local = at.astimezone(tz).replace(tzinfo=None)
    k = (local - rotation.start) // rotation.shift  # a guess: off by one near DST changes
    while _handoff(rotation, tz, k) > at:
        k -= 1
    while _handoff(rotation, tz, k + 1) <= at:
        k += 1
    return k


def handoffs(rotation: Rotation, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The rotation's hand-off instants (aware UTC) in [start, end), k >= 0 only."""
    start, end = _aware(start, "start"), _aware(end, "end")
    k = max(_index(rotation, tz, start), 0)
    found: list[datetime] = []
    while (instant := _handoff(rotation, tz, k)) < end:
        if instant >= start and (not found or instant != found[-1]):  # zero-length shift
            found.append(instant)
        k += 1
    return found


def _layer(schedule: Schedule, layer: str) -> Rotation:
    for rotation in schedule.layers:
        if rotation.name == layer:
            return rotation
    names = ", ".join(r.name for r in schedule.layers)
    raise KeyError(f"schedule '{schedule.name}' has no layer '{layer}' (layers: {names})")


def _applying(overrides: Sequence[Override], layer: str) -> list[Override]:
    """The overrides for `layer`, in UTC, creation order kept (last wins)."""
    found = []
    for o in overrides:
        if o.layer is None or o.layer == layer:
            start, end = _aware(o.start, "override start"), _aware(o.end, "override end")
            if start < end:
                found.append(Override(o.user, start, end, o.layer))
    return found


def on_call(schedule: Schedule, layer: str, at: datetime,
            overrides: Sequence[Override] = ()) -> Shift | None:
    """Who is on call on `layer` at `at`: the newest override covering `at`,
    else the rotation shift containing `at`. start/end are that override's or
    shift's own bounds (shifts() gives the pieces as cut by other overrides).
    None before the rotation starts; KeyError for an unknown layer."""
    rotation = _layer(schedule, layer)
    at = _aware(at, "at")
    for o in reversed(_applying(overrides, layer)):
        if o.start <= at < o.end:
            return Shift(o.user, o.start, o.end, layer, override=True)
    tz = ZoneInfo(schedule.timezone)
    k = _index(rotation, tz, at)
    if k < 0:
        return None
    user = rotation.participants[k % len(rotation.participants)]
    return Shift(user, _handoff(rotation, tz, k), _handoff(rotation, tz, k + 1), layer)


def shifts(schedule: Schedule, layer: str, start: datetime, end: datetime,
           overrides: Sequence[Override] = ()) -> list[Shift]:
    """The timeline of `layer` in [start, end), pieces clipped to the window.

    Overrides cut into regular shifts (newest wins where they overlap) and the
    rest of a cut shift stays before/after. Adjacent pieces merge when both are
    regular shifts of the same user, or both are parts of the same override;
    an override never merges with anything else, so it stays visible even
    when it names the person who was on call anyway. Holes (before the
    rotation starts) have no piece.
    """
    rotation = _layer(schedule, layer)
    start, end = _aware(start, "start"), _aware(end, "end")
    if end <= start:
        return []
    tz, people = ZoneInfo(schedule.timezone), rotation.participants
    regular: list[tuple[datetime, datetime, str]] = []
    k = max(_index(rotation, tz, start), 0)
    while (begin := _handoff(rotation, tz, k)) < end:
        piece = (max(begin, start), min(_handoff(rotation, tz, k + 1), end))
        if piece[0] < piece[1]:
            regular.append((*piece, people[k % len(people)]))
        k += 1
    applying = [o for o in _applying(overrides, layer) if o.start < end and o.end > start]
    points = {start, end} | {t for r in regular for t in r[:2]}
    points |= {min(max(t, start), end) for o in applying for t in (o.start, o.end)}
    bounds = sorted(points)
    timeline: list[Shift] = []
    owners: list[object] = []  # what may merge: ("regular", user) or an override's index
    j = 0
    for a, b in pairwise(bounds):
        newest = [i for i, o in enumerate(applying) if o.start <= a and b <= o.end]
        while j < len(regular) and regular[j][1] <= a:  # pieces and bounds both ascend
            j += 1
        if newest:
            owner: object = newest[-1]
            user, is_override = applying[newest[-1]].user, True
        elif j < len(regular) and regular[j][0] <= a:
            owner, user, is_override = ("regular", regular[j][2]), regular[j][2], False
        else:
            continue  # nobody: before the rotation starts
        if timeline and owners[-1] == owner and timeline[-1].end == a:
            timeline[-1] = Shift(user, timeline[-1].start, b, layer, is_override)
        else:
            timeline.append(Shift(user, a, b, layer, is_override))
            owners.append(owner)
    return timeline


def next_handoff(schedule: Schedule, layer: str, at: datetime,
                 overrides: Sequence[Override] = ()) -> Shift | None:
    """The first piece of the timeline starting after `at` whose user differs
    from whoever is on call at `at` (nobody counts as a user): what /oncall
    shows as the next hand-off. None when the same person is on call forever."""
    rotation = _layer(schedule, layer)
    at = _aware(at, "at")
    tz = ZoneInfo(schedule.timezone)
    current = on_call(schedule, layer, at, overrides)
    # After every override has ended, 2n+2 regular shifts are enough: if the
    # participants differ at all, someone else's run starts and ends in there.
    base = max([at, _handoff(rotation, tz, 0)] + [o.end for o in _applying(overrides, layer)])
    k = _index(rotation, tz, base) + 2 * len(rotation.participants) + 3
    for piece in shifts(schedule, layer, at, _handoff(rotation, tz, k), overrides):
        if piece.start > at and (current is None or piece.user != current.user):
            return piece
    return None


_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")
_WHEN_HELP = "use e.g. now, 14:30, tomorrow 09:00, 2026-03-29 09:00, in 4h or 90m"
_WINDOW_HELP = "use '<from> <until>', '<from> for 4h', 'for 4h' or 'until tomorrow 09:00'"


def _clock(text: str) -> time | None:
    match = _CLOCK.fullmatch(text)
    if match is None:
        return None
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        raise ValueError(f"'{text}' is not a time of day (00:00 to 23:59)")
    return time(hour, minute)


def _when(text: str, tz: ZoneInfo, now: datetime, after: datetime) -> datetime:
    """parse_when, except a bare "HH:MM" is its next occurrence at or after
    `after`: an until of "17:00" after a from of "22:00" means tomorrow."""
    raw = " ".join(text.split())
    low = raw.lower()
    if not raw:
        raise ValueError(f"empty time: {_WHEN_HELP}")
    if low == "now":
        return now
    if low.startswith("in "):
        return now + parse_duration(low[3:].replace(" ", ""))
    words = low.split()
    if len(words) == 2 and words[0] in ("today", "tomorrow") and (
            t := _clock(words[1])) is not None:
        day = now.astimezone(tz).date() + timedelta(days=1 if words[0] == "tomorrow" else 0)
        return to_utc(datetime.combine(day, t), tz)
    if (t := _clock(low)) is not None:
        day = after.astimezone(tz).date()
        instant = to_utc(datetime.combine(day, t), tz)
        if instant < after:  # the next calendar day, not +24h: the clock must read HH:MM
            instant = to_utc(datetime.combine(day + timedelta(days=1), t), tz)
        return instant
    try:
        return now + parse_duration(low)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"can't read '{text}' as a time: {_WHEN_HELP}") from None
    if parsed.tzinfo is not None:  # an explicit offset ("Z", "+02:00") is honoured
        return parsed.astimezone(UTC)
    return to_utc(parsed, tz)


def parse_when(text: str, tz: ZoneInfo, now: datetime) -> datetime:
    """One instant typed by a person, local times read in `tz`; aware UTC.

    "now"; "in 4h", "4h", "90m" (from now); "HH:MM" (today, or tomorrow if
    already past); "today HH:MM" / "tomorrow HH:MM"; ISO local date-times
    ("2026-03-29T09:00", "2026-03-29 09:00"). ValueError otherwise.
    """
    now = _aware(now, "now")
    return _when(text, tz, now, now)


def parse_window(args: list[str], tz: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """An override window: "<from> <until>", "<from> until <until>",
    "<from> for <duration>", "for 4h" or "until tomorrow 09:00" (both from now).
    A bare "HH:MM" until is the next such time after the start. end > start."""
    now = _aware(now, "now")
    words = [w for arg in args for w in arg.split()]
    if words and words[0].lower() == "from":
        words = words[1:]
    low = [w.lower() for w in words]
    if not words:
        raise ValueError(f"give the override's window: {_WINDOW_HELP}")
    if "for" in low or "until" in low:
        i = low.index("for") if "for" in low else low.index("until")
        start = _when(" ".join(words[:i]), tz, now, now) if i else now
        rest = "".join(words[i + 1:]) if low[i] == "for" else " ".join(words[i + 1:])
        if not rest:
            raise ValueError(f"nothing after '{low[i]}': {_WINDOW_HELP}")
        end = start + parse_duration(rest) if low[i] == "for" else _when(rest, tz, now, start)
    else:
        # "tomorrow 09:00 2026-03-30 09:00" has no separator: find the one
        # split where both halves read as times.
        pairs = []
        for i in range(1, len(words)):
            try:
                first = _when(" ".join(words[:i]), tz, now, now)
                pairs.append((first, _when(" ".join(words[i:]), tz, now, first)))
            except ValueError:
                continue
        if len(pairs) != 1:
            why = "is ambiguous" if pairs else "is not a window"
            raise ValueError(f"'{' '.join(words)}' {why}: {_WINDOW_HELP}")
        start, end = pairs[0]
    if end <= start:
        shown = [t.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") for t in (end, start)]
        raise ValueError("the window ends ({}) before it starts ({})".format(*shown))
    return start, end
