"""Scheduled minimums (issue 13 §2): the grammar and the windows in force at an injected clock, by table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dask_adaptive.schedule import FORM, Schedule, active_windows, parse_schedule

WORKDAY = "Mon-Fri 08:00-18:00 Europe/London=4"


def minimum_at(schedule: Schedule, now: datetime) -> int:
    """The scheduled minimum at `now`, as the controller takes it: the highest window in force, else 0."""
    return max((w.minimum for w in active_windows(schedule, now)), default=0)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "now", "expected"),
    [
        # 2026-03-02 is a Monday; London is on GMT (= UTC) in winter
        (WORKDAY, "2026-03-02 07:59:59", 0),
        (WORKDAY, "2026-03-02 08:00:00", 4),
        (WORKDAY, "2026-03-02 17:59:59", 4),
        (WORKDAY, "2026-03-02 18:00:00", 0),
        (WORKDAY, "2026-03-06 12:00:00", 4),  # Friday
        (WORKDAY, "2026-03-07 12:00:00", 0),  # Saturday
        # summer: BST = UTC+1, the window follows the wall clock
        (WORKDAY, "2026-07-06 06:59:59", 0),
        (WORKDAY, "2026-07-06 07:00:00", 4),
        (WORKDAY, "2026-07-06 16:59:59", 4),
        (WORKDAY, "2026-07-06 17:00:00", 0),
        # spring forward 2026-03-29 01:00 UTC: 01:00 GMT jumps to 02:00 BST; a 01:30 start never occurs
        # on the wall clock, so the window begins at the jump
        ("01:30-03:00 Europe/London=2", "2026-03-29 00:59:59", 0),
        ("01:30-03:00 Europe/London=2", "2026-03-29 01:00:00", 2),
        ("01:30-03:00 Europe/London=2", "2026-03-29 01:59:59", 2),
        ("01:30-03:00 Europe/London=2", "2026-03-29 02:00:00", 0),
        # an end inside the skipped hour ends at the jump
        ("00:00-01:30 Europe/London=2", "2026-03-29 00:59:59", 2),
        ("00:00-01:30 Europe/London=2", "2026-03-29 01:00:00", 0),
        # fall back 2026-10-25 01:00 UTC: 02:00 BST goes back to 01:00 GMT, 01:00-02:00 occurs twice and
        # is in the window both times
        ("01:00-01:30 Europe/London=3", "2026-10-24 23:59:59", 0),
        ("01:00-01:30 Europe/London=3", "2026-10-25 00:00:00", 3),
        ("01:00-01:30 Europe/London=3", "2026-10-25 00:30:00", 0),
        ("01:00-01:30 Europe/London=3", "2026-10-25 01:00:00", 3),
        ("01:00-01:30 Europe/London=3", "2026-10-25 01:29:59", 3),
        ("01:00-01:30 Europe/London=3", "2026-10-25 01:30:00", 0),
        # a whole day on the 23-hour spring-forward Sunday: ends at local midnight, 23:00 UTC
        ("Sun 00:00-24:00 Europe/London=1", "2026-03-28 23:59:59", 0),
        ("Sun 00:00-24:00 Europe/London=1", "2026-03-29 00:00:00", 1),
        ("Sun 00:00-24:00 Europe/London=1", "2026-03-29 22:59:59", 1),
        ("Sun 00:00-24:00 Europe/London=1", "2026-03-29 23:00:00", 0),
        # New York changes on another date (2026-03-08): 09:00 EDT = 13:00 UTC
        ("09:00-17:00 America/New_York=2", "2026-03-09 13:00:00", 2),
        ("09:00-17:00 America/New_York=2", "2026-03-06 13:00:00", 0),  # 08:00 EST
        # overnight: belongs to the day it starts on (2026-03-06 is a Friday)
        ("Fri 22:00-06:00 UTC=2", "2026-03-06 21:59:59", 0),
        ("Fri 22:00-06:00 UTC=2", "2026-03-06 22:00:00", 2),
        ("Fri 22:00-06:00 UTC=2", "2026-03-07 05:59:59", 2),  # Saturday morning
        ("Fri 22:00-06:00 UTC=2", "2026-03-07 06:00:00", 0),
        ("Fri 22:00-06:00 UTC=2", "2026-03-06 05:00:00", 0),  # Friday morning follows Thursday: not listed
        ("Fri 22:00-06:00 UTC=2", "2026-03-07 22:30:00", 0),  # Saturday evening
        ("Fri 22:00-00:00 UTC=2", "2026-03-06 23:59:59", 2),  # ends at midnight
        ("Fri 22:00-00:00 UTC=2", "2026-03-07 00:00:00", 0),
        # no days: every day; Sunday's overnight window runs into Monday
        ("22:00-06:00 UTC=1", "2026-03-02 03:00:00", 1),
        ("22:00-06:00 UTC=1", "2026-03-02 12:00:00", 0),
        # day lists, ranges, wrapping ranges, any case
        ("Mon,Wed-Fri 09:00-10:00 UTC=1", "2026-03-02 09:30:00", 1),  # Monday
        ("Mon,Wed-Fri 09:00-10:00 UTC=1", "2026-03-03 09:30:00", 0),  # Tuesday
        ("Mon,Wed-Fri 09:00-10:00 UTC=1", "2026-03-04 09:30:00", 1),  # Wednesday
        ("fri-MON 09:00-10:00 UTC=1", "2026-03-08 09:30:00", 1),  # Sunday
        ("fri-MON 09:00-10:00 UTC=1", "2026-03-03 09:30:00", 0),  # Tuesday
        ("Sat, Sun 09:00-10:00 UTC=1", "2026-03-07 09:30:00", 1),
        # several windows in force: the highest wins; none in force: 0
        (f"{WORKDAY}; Mon 11:00-12:00 UTC=6; 00:00-24:00 UTC=1", "2026-03-02 11:30:00", 6),
        (f"{WORKDAY}; Mon 11:00-12:00 UTC=6; 00:00-24:00 UTC=1", "2026-03-02 12:30:00", 4),
        (f"{WORKDAY}; Mon 11:00-12:00 UTC=6; 00:00-24:00 UTC=1", "2026-03-02 20:00:00", 1),
        ("", "2026-03-02 12:00:00", 0),
    ],
)
def test_minimum_at(schedule, now, expected):
    assert minimum_at(parse_schedule(schedule), utc(now)) == expected


def test_the_instant_counts_not_the_zone_it_is_written_in():
    schedule = parse_schedule(WORKDAY)
    tokyo = datetime.fromisoformat("2026-03-02T17:00:00+09:00")  # 08:00 in London
    assert minimum_at(schedule, tokyo) == 4
    with pytest.raises(ValueError, match="aware datetime"):
        minimum_at(schedule, datetime(2026, 3, 2, 12))


def test_parse_normalises_the_text_it_logs():
    schedule = parse_schedule("  sat, sun 9:00 - 12:30   UTC = 2 ;Mon-Fri 08:00-18:00 Europe/London=04 ")
    assert str(schedule) == "sat,sun 9:00-12:30 UTC=2; Mon-Fri 08:00-18:00 Europe/London=4"
    assert schedule.highest == 4 and parse_schedule(None).highest == 0
    [window] = active_windows(schedule, utc("2026-03-07 10:00:00"))
    assert window.text == "sat,sun 9:00-12:30 UTC=2"


@pytest.mark.parametrize(
    ("text", "part", "problem"),
    [
        ("Mon-Fry 08:00-18:00 UTC=1", "Mon-Fry 08:00-18:00 UTC=1", "days 'Mon-Fry'"),
        ("Mon-Tue-Wed 08:00-18:00 UTC=1", "Mon-Tue-Wed 08:00-18:00 UTC=1", "days 'Mon-Tue-Wed'"),
        ("08:00-08:00 UTC=1", "08:00-08:00 UTC=1", "start equals end"),
        ("08:00-25:00 UTC=1", "08:00-25:00 UTC=1", "time '25:00'"),
        ("24:00-06:00 UTC=1", "24:00-06:00 UTC=1", "time '24:00'"),
        ("08:60-09:00 UTC=1", "08:60-09:00 UTC=1", "time '08:60'"),
        ("08:00-18:00 UTC=0", "08:00-18:00 UTC=0", "workers '0'"),
        ("08:00-18:00 UTC=-1", "08:00-18:00 UTC=-1", "workers '-1'"),
        ("08:00-18:00 UTC=two", "08:00-18:00 UTC=two", "workers 'two'"),
        ("08:00-18:00 Europe/Londn=2", "08:00-18:00 Europe/Londn=2", "time zone 'Europe/Londn'"),
        ("08:00-18:00 Europe=2", "08:00-18:00 Europe=2", "time zone 'Europe'"),
        ("08:00-18:00 ../etc/passwd=2", "08:00-18:00 ../etc/passwd=2", "time zone '../etc/passwd'"),
        ("08:00-18:00=2", "08:00-18:00=2", "not of the form"),  # the zone is required
        ("Mon-Fri 08:00-18:00 UTC", "Mon-Fri 08:00-18:00 UTC", "not of the form"),
        ("08:00-18:00 UTC=1;", "", "not of the form"),  # an empty window
        ("08:00-18:00 UTC=1; 8-18 UTC=1", "8-18 UTC=1", "not of the form"),  # names the bad one
    ],
)
def test_bad_windows_are_named_with_the_allowed_form(text, part, problem):
    with pytest.raises(ValueError) as err:
        parse_schedule(text)
    message = str(err.value)
    assert message.startswith(f"window {part!r}: {problem}")
    assert message.endswith(f"; allowed: {FORM}")


def test_a_missing_zone_says_how_to_get_the_data_and_utc_needs_none(monkeypatch):
    """The stock image has tz data (conda-forge pandas depends on python-tzdata); without any, every
    zone but UTC fails at start naming the zone, not at the first look."""
    import zoneinfo

    monkeypatch.setattr("dask_adaptive.schedule.ZoneInfo", _no_database)
    with pytest.raises(ValueError, match=r"time zone 'Europe/London' .* install the tzdata package"):
        parse_schedule(WORKDAY)
    assert minimum_at(parse_schedule("08:00-18:00 UTC=1"), utc("2026-03-02 09:00:00")) == 1
    assert zoneinfo.ZoneInfo("Europe/London")  # the real database of this machine is untouched


def _no_database(name: str) -> object:
    import zoneinfo

    raise zoneinfo.ZoneInfoNotFoundError(f"No time zone found with key {name}")
