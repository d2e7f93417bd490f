"""Rotation hand-offs, overrides and override windows at exact instants,
across the 2026 DST changes in New York (03-08, 11-01) and Berlin (03-29, 10-25)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.core.config import Rotation, Schedule
from bot.paging.schedules import (
    Override,
    Shift,
    handoffs,
    next_handoff,
    on_call,
    parse_when,
    parse_window,
    shifts,
    to_utc,
)

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
DAY, HOUR = timedelta(days=1), timedelta(hours=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def schedule(
    tz: str, start: datetime, shift: timedelta = DAY, people: tuple[str, ...] = ("A", "B", "C")
) -> Schedule:
    return Schedule(
        name="ops",
        timezone=tz,
        layers=[
            Rotation(name="primary", participants=list(people), shift=shift, start=start),
            Rotation(name="secondary", participants=["S"], shift=timedelta(weeks=1), start=start),
        ],
    )


def rotation_of(s: Schedule) -> Rotation:
    return s.layers[0]


# Each DST change: zone, the day, the UTC hour of 09:00 local before and after it.
CHANGES = [
    pytest.param("America/New_York", datetime(2026, 3, 8), 14, 13, id="ny-spring"),
    pytest.param("America/New_York", datetime(2026, 11, 1), 13, 14, id="ny-fall"),
    pytest.param("Europe/Berlin", datetime(2026, 3, 29), 8, 7, id="berlin-spring"),
    pytest.param("Europe/Berlin", datetime(2026, 10, 25), 7, 8, id="berlin-fall"),
]


@pytest.mark.parametrize(("zone", "day", "before", "after"), CHANGES)
def test_daily_handoff_stays_at_nine_local(
    zone: str, day: datetime, before: int, after: int
) -> None:
    tz = ZoneInfo(zone)
    rot = rotation_of(schedule(zone, day - 10 * DAY + 9 * HOUR))
    window = handoffs(rot, tz, to_utc(day - 3 * DAY, tz), to_utc(day + 3 * DAY, tz))
    assert [local(t, tz) for t in window] == [day + k * DAY + 9 * HOUR for k in range(-3, 3)]
    assert [t.hour for t in window] == [before] * 3 + [after] * 3  # UTC moves by an hour
    assert all(t.tzinfo == UTC for t in window)


@pytest.mark.parametrize(("zone", "day", "before", "after"), CHANGES)
def test_weekly_monday_handoff_stays_at_nine_local(
    zone: str, day: datetime, before: int, after: int
) -> None:
    tz = ZoneInfo(zone)
    first_monday = datetime(2026, 1, 5, 9)
    rot = rotation_of(schedule(zone, first_monday, timedelta(weeks=1)))
    window = handoffs(rot, tz, to_utc(day - 14 * DAY, tz), to_utc(day + 14 * DAY, tz))
    assert len(window) == 4
    assert all(local(t, tz).weekday() == 0 and local(t, tz).hour == 9 for t in window)
    assert [t.hour for t in window] == [before] * 2 + [after] * 2


def test_twelve_hour_rotation_hands_off_at_nine_and_twenty_one() -> None:
    s = schedule("America/New_York", datetime(2026, 3, 1, 9), 12 * HOUR, ("A", "B"))
    spring = handoffs(rotation_of(s), NY, utc(2026, 3, 7, 12), utc(2026, 3, 9, 12))
    assert [local(t, NY).hour for t in spring] == [9, 21, 9, 21]
    assert spring[1] == utc(2026, 3, 8, 2) and spring[2] == utc(2026, 3, 8, 13)
    # The overnight shift across the change is an hour short: 21:00 EST to 09:00 EDT.
    night = on_call(s, "primary", utc(2026, 3, 8, 12))
    assert night == Shift("B", utc(2026, 3, 8, 2), utc(2026, 3, 8, 13), "primary")
    fall = handoffs(rotation_of(s), NY, utc(2026, 10, 31, 12), utc(2026, 11, 2, 12))
    assert [local(t, NY).hour for t in fall] == [9, 21, 9, 21]
    night = on_call(s, "primary", utc(2026, 11, 1, 6))
    assert night is not None and night.end - night.start == 13 * HOUR


def test_handoff_in_a_gap_moves_to_the_end_of_the_gap() -> None:
    for zone, day, jump in [
        ("America/New_York", datetime(2026, 3, 8), utc(2026, 3, 8, 7)),
        ("Europe/Berlin", datetime(2026, 3, 29), utc(2026, 3, 29, 1)),
    ]:
        tz = ZoneInfo(zone)
        rot = rotation_of(schedule(zone, day - 5 * DAY + timedelta(hours=2, minutes=30)))
        window = handoffs(rot, tz, to_utc(day - DAY, tz), to_utc(day + 2 * DAY, tz))
        # 02:30 does not exist on the day: 03:00 local, the instant the clock jumps.
        assert window[1] == jump
        assert [local(t, tz).strftime("%H:%M") for t in window] == ["02:30", "03:00", "02:30"]


def test_hourly_rotation_drops_the_hour_that_does_not_exist() -> None:
    s = schedule("America/New_York", datetime(2026, 3, 8, 0), HOUR, ("A", "B", "C", "D"))
    window = handoffs(rotation_of(s), NY, utc(2026, 3, 8, 5), utc(2026, 3, 8, 9))
    # 00:00 and 01:00 EST, then 03:00 and 04:00 EDT: 02:00 would coincide with 03:00.
    assert window == [
        utc(2026, 3, 8, 5),
        utc(2026, 3, 8, 6),
        utc(2026, 3, 8, 7),
        utc(2026, 3, 8, 8),
    ]
    timeline = shifts(s, "primary", utc(2026, 3, 8, 5), utc(2026, 3, 8, 9))
    assert [(p.user, p.start.hour) for p in timeline] == [("A", 5), ("B", 6), ("D", 7), ("A", 8)]
    on = on_call(s, "primary", utc(2026, 3, 8, 7, 30))
    assert on is not None and on.user == "D"  # k=3 (03:00); C's k=2 slot lasted no time


def test_handoff_in_a_fold_takes_the_first_occurrence() -> None:
    s = schedule("America/New_York", datetime(2026, 10, 25, 1, 30), DAY, ("A", "B"))
    window = handoffs(rotation_of(s), NY, utc(2026, 10, 31), utc(2026, 11, 3))
    assert window[1] == utc(2026, 11, 1, 5, 30)  # 01:30 EDT, not 01:30 EST (06:30Z)
    assert [local(t, NY).strftime("%H:%M") for t in window] == ["01:30"] * 3
    first, second = (
        on_call(s, "primary", utc(2026, 11, 1, 5)),
        on_call(s, "primary", utc(2026, 11, 1, 6, 30)),
    )  # the second 01:30 is well into the shift
    assert first is not None and second is not None and first.user != second.user
    assert second.end - second.start == 25 * HOUR
    berlin = schedule("Europe/Berlin", datetime(2026, 10, 20, 2, 30), DAY)
    hand = handoffs(rotation_of(berlin), BERLIN, utc(2026, 10, 25), utc(2026, 10, 26))
    assert hand == [utc(2026, 10, 25, 0, 30)]  # 02:30 CEST


def test_hourly_rotation_through_a_fold_gives_one_shift_two_hours() -> None:
    s = schedule("America/New_York", datetime(2026, 11, 1, 0), HOUR, ("A", "B", "C"))
    window = handoffs(rotation_of(s), NY, utc(2026, 11, 1, 4), utc(2026, 11, 1, 8))
    assert window == [utc(2026, 11, 1, 4), utc(2026, 11, 1, 5), utc(2026, 11, 1, 7)]
    on = on_call(s, "primary", utc(2026, 11, 1, 6, 15))
    assert on == Shift("B", utc(2026, 11, 1, 5), utc(2026, 11, 1, 7), "primary")


def test_participants_take_turns_in_order() -> None:
    s = schedule("Europe/Berlin", datetime(2026, 3, 25, 9))
    users = [on_call(s, "primary", utc(2026, 3, 25 + d, 12)) for d in range(7)]
    assert [u.user if u else None for u in users] == list("ABCABCA")
    assert users[4] == Shift("B", utc(2026, 3, 29, 7), utc(2026, 3, 30, 7), "primary")
    assert users[3] is not None and users[3].end - users[3].start == 23 * HOUR


def test_nobody_is_on_call_before_the_rotation_starts() -> None:
    s = schedule("America/New_York", datetime(2026, 3, 10, 9))
    start = utc(2026, 3, 10, 13)
    assert on_call(s, "primary", start - timedelta(seconds=1)) is None
    assert on_call(s, "primary", start) == Shift("A", start, start + DAY, "primary")
    assert handoffs(rotation_of(s), NY, utc(2026, 3, 1), utc(2026, 3, 11, 14)) == [
        start,
        start + DAY,
    ]
    assert shifts(s, "primary", utc(2026, 3, 1), start + HOUR) == [
        Shift("A", start, start + HOUR, "primary")
    ]
    assert handoffs(rotation_of(s), NY, utc(2026, 3, 1), utc(2026, 3, 2)) == []
    nxt = next_handoff(s, "primary", utc(2026, 3, 1))
    assert nxt is not None and (nxt.user, nxt.start) == ("A", start)


def test_unknown_layer_raises_key_error() -> None:
    s = schedule("UTC", datetime(2026, 1, 1))
    with pytest.raises(KeyError, match=r"no layer 'tertiary'.*primary, secondary"):
        on_call(s, "tertiary", utc(2026, 2, 1))
    with pytest.raises(KeyError):
        shifts(s, "tertiary", utc(2026, 2, 1), utc(2026, 2, 2))


def test_naive_instants_are_refused() -> None:
    s = schedule("UTC", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        on_call(s, "primary", datetime(2026, 2, 1))
    with pytest.raises(ValueError, match="override start"):
        on_call(
            s, "primary", utc(2026, 2, 1), [Override("X", datetime(2026, 2, 1), utc(2026, 2, 2))]
        )


def test_weekend_override_across_the_dst_change() -> None:
    s = schedule("Europe/Berlin", datetime(2026, 3, 23, 9))  # Monday; A, B, C daily: Sat C
    sat, mon = to_utc(datetime(2026, 3, 28, 9), BERLIN), to_utc(datetime(2026, 3, 30, 9), BERLIN)
    assert (sat, mon) == (utc(2026, 3, 28, 8), utc(2026, 3, 30, 7))  # 47 hours
    cover = [Override("X", sat, mon)]
    assert on_call(s, "primary", utc(2026, 3, 29, 12), cover) == Shift(
        "X", sat, mon, "primary", override=True
    )
    after = on_call(s, "primary", mon, cover)
    assert after is not None and (after.user, after.override) == ("B", False)
    other = on_call(s, "secondary", utc(2026, 3, 29, 12), cover)  # layer None: every layer
    assert other is not None and other.user == "X"
    timeline = shifts(s, "primary", utc(2026, 3, 27, 8), utc(2026, 3, 31, 7), cover)
    assert timeline == [
        Shift("B", utc(2026, 3, 27, 8), sat, "primary"),
        Shift("X", sat, mon, "primary", override=True),  # one piece across two shifts
        Shift("B", mon, utc(2026, 3, 31, 7), "primary"),  # not merged with Friday's B
    ]


def test_override_cuts_a_shift_into_pieces() -> None:
    s = schedule("America/New_York", datetime(2026, 3, 2, 9))
    cover = [
        Override("X", utc(2026, 3, 7, 20), utc(2026, 3, 8, 16), layer="primary"),
        Override("Y", utc(2026, 3, 7, 0), utc(2026, 3, 9, 0), layer="secondary"),
    ]
    timeline = shifts(s, "primary", utc(2026, 3, 7, 14), utc(2026, 3, 9, 13), cover)
    assert [(p.user, p.start, p.end, p.override) for p in timeline] == [
        ("C", utc(2026, 3, 7, 14), utc(2026, 3, 7, 20), False),  # Saturday 09:00 EST
        ("X", utc(2026, 3, 7, 20), utc(2026, 3, 8, 16), True),
        ("A", utc(2026, 3, 8, 16), utc(2026, 3, 9, 13), False),  # Sunday's rest, to 09:00 EDT
    ]


def test_overlapping_overrides_last_one_wins() -> None:
    s = schedule("UTC", datetime(2026, 1, 1))
    x = Override("X", utc(2026, 1, 5, 10), utc(2026, 1, 5, 14))
    y = Override("Y", utc(2026, 1, 5, 12), utc(2026, 1, 5, 16))
    at = utc(2026, 1, 5, 13)
    assert on_call(s, "primary", at, [x, y]) == Shift("Y", y.start, y.end, "primary", True)
    assert on_call(s, "primary", at, [y, x]) == Shift("X", x.start, x.end, "primary", True)
    window = (utc(2026, 1, 5, 9), utc(2026, 1, 5, 17))
    assert [(p.user, p.start.hour, p.end.hour) for p in shifts(s, "primary", *window, [x, y])] == [
        ("B", 9, 10),
        ("X", 10, 12),
        ("Y", 12, 16),
        ("B", 16, 17),
    ]
    assert [(p.user, p.start.hour, p.end.hour) for p in shifts(s, "primary", *window, [y, x])] == [
        ("B", 9, 10),
        ("X", 10, 14),
        ("Y", 14, 16),
        ("B", 16, 17),
    ]


def test_merging_rules() -> None:
    solo = schedule("UTC", datetime(2026, 1, 1), DAY, ("A",))
    assert shifts(solo, "primary", utc(2026, 1, 2), utc(2026, 1, 9)) == [
        Shift("A", utc(2026, 1, 2), utc(2026, 1, 9), "primary")
    ]
    # An override naming the person on call anyway still shows as its own piece.
    same = [Override("A", utc(2026, 1, 3), utc(2026, 1, 4))]
    assert [
        p.override for p in shifts(solo, "primary", utc(2026, 1, 2), utc(2026, 1, 5), same)
    ] == [False, True, False]
    assert shifts(solo, "primary", utc(2026, 1, 5), utc(2026, 1, 5)) == []


def test_next_handoff_skips_shifts_of_the_same_person() -> None:
    s = schedule("UTC", datetime(2026, 1, 1), DAY, ("A", "A", "B"))
    nxt = next_handoff(s, "primary", utc(2026, 1, 1, 6))
    assert nxt == Shift("B", utc(2026, 1, 3), utc(2026, 1, 4), "primary")
    # A's override on B's day and the A days around it: the next hand-off is B's remainder.
    cover = [Override("A", utc(2026, 1, 3), utc(2026, 1, 3, 12))]
    nxt = next_handoff(s, "primary", utc(2026, 1, 1, 6), cover)
    assert nxt == Shift("B", utc(2026, 1, 3, 12), utc(2026, 1, 4), "primary")
    # During an override, the next hand-off is back to the rotation.
    nxt = next_handoff(s, "primary", utc(2026, 1, 3, 6), cover)
    assert nxt == Shift("B", utc(2026, 1, 3, 12), utc(2026, 1, 4), "primary")
    solo = schedule("UTC", datetime(2026, 1, 1), DAY, ("A",))
    assert next_handoff(solo, "primary", utc(2026, 1, 5)) is None
    x = [Override("X", utc(2026, 1, 6), utc(2026, 1, 7))]
    assert next_handoff(solo, "primary", utc(2026, 1, 5), x) == Shift(
        "X", utc(2026, 1, 6), utc(2026, 1, 7), "primary", True
    )


def test_next_handoff_across_dst_for_a_weekly_rotation() -> None:
    s = schedule("America/New_York", datetime(2026, 3, 2, 9), timedelta(weeks=1))
    nxt = next_handoff(s, "primary", utc(2026, 3, 5))
    assert nxt is not None and nxt.user == "B"
    assert (nxt.start, nxt.end) == (utc(2026, 3, 9, 13), utc(2026, 3, 16, 13))  # EDT


NOW = utc(2026, 3, 28, 11)  # Saturday 12:00 in Berlin, the day before spring forward


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("in 4h", NOW + 4 * HOUR),
        ("4h", NOW + 4 * HOUR),
        ("90m", NOW + timedelta(minutes=90)),
        ("in 1h 30m", NOW + timedelta(minutes=90)),
        ("15:00", utc(2026, 3, 28, 14)),  # later today
        ("09:00", utc(2026, 3, 29, 7)),  # already past: tomorrow, 09:00 CEST
        ("12:00", NOW),  # exactly now is not past
        ("today 09:00", utc(2026, 3, 28, 8)),
        ("Tomorrow  09:00", utc(2026, 3, 29, 7)),
        ("2026-03-29T09:00", utc(2026, 3, 29, 7)),
        ("2026-03-29 09:00", utc(2026, 3, 29, 7)),
        ("2026-03-29 02:30", utc(2026, 3, 29, 1)),  # in the gap: 03:00 CEST
        ("2026-03-29T09:00Z", utc(2026, 3, 29, 9)),  # an explicit offset is honoured
    ],
)
def test_parse_when(text: str, expected: datetime) -> None:
    got = parse_when(text, BERLIN, NOW)
    assert got == expected and got.tzinfo == UTC


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("soon", "can't read 'soon'"),
        ("25:00", "not a time of day"),
        ("tomorrow", "can't read"),
        ("in a bit", "not a duration"),
        ("yesterday 09:00", "can't read"),
    ],
)
def test_parse_when_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_when(text, BERLIN, NOW)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["2026-03-29", "09:00", "2026-03-30", "09:00"],
            (utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)),
        ),
        (["2026-03-29 09:00", "2026-03-30 09:00"], (utc(2026, 3, 29, 7), utc(2026, 3, 30, 7))),
        (["for", "4h"], (NOW, NOW + 4 * HOUR)),
        (["for", "1h", "30m"], (NOW, NOW + timedelta(minutes=90))),
        (["until", "tomorrow", "09:00"], (NOW, utc(2026, 3, 29, 7))),
        (["tomorrow", "09:00", "for", "8h"], (utc(2026, 3, 29, 7), utc(2026, 3, 29, 15))),
        (["from", "14:00", "until", "18:00"], (utc(2026, 3, 28, 13), utc(2026, 3, 28, 17))),
        (["22:00", "06:00"], (utc(2026, 3, 28, 21), utc(2026, 3, 29, 4))),  # overnight, into CEST
        (["09:00", "17:00"], (utc(2026, 3, 29, 7), utc(2026, 3, 29, 15))),  # 09:00 passed: tomorrow
        (["now", "tomorrow", "09:00"], (NOW, utc(2026, 3, 29, 7))),
    ],
)
def test_parse_window(args: list[str], expected: tuple[datetime, datetime]) -> None:
    assert parse_window(args, BERLIN, NOW) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give the override's window"),
        (["for"], "nothing after 'for'"),
        (["4h"], "is not a window"),
        (["soon", "later"], "is not a window"),
        (
            ["2026-03-30 09:00", "2026-03-29 09:00"],
            r"ends \(2026-03-29 09:00 CEST\) before it starts",
        ),
        (["until", "2026-03-01 09:00"], "before it starts"),
        (["for", "0m"], "before it starts"),
        (["for", "ever"], "not a duration"),
    ],
)
def test_parse_window_errors(args: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_window(args, BERLIN, NOW)
