"""Scheduled minimums: "at least 4 workers Mon-Fri 08:00-18:00 London time" (issue 13 §2).

Stdlib only (the Pulumi program validates `dask.minWorkersSchedule` at preview time with
`parse_schedule`, and the preload runs in the stock Dask image). The grammar:

    schedule := window (";" window)*                 an empty text is no schedule
    window   := [days " "] HH:MM "-" HH:MM " " zone "=" count
    days     := day ("," day)* | day "-" day ...      Mon Tue Wed Thu Fri Sat Sun, any case;
                                                      ranges wrap (Fri-Mon), lists mix (Mon,Wed-Fri);
                                                      no days: every day
    zone     := an IANA time zone (Europe/London, America/New_York, UTC)
    count    := an integer >= 1

e.g. `Mon-Fri 08:00-18:00 Europe/London=4; Sat 10:00-14:00 UTC=1`. Times are the zone's wall clock,
so a window follows daylight saving time. An end before the start runs overnight and belongs to the
day it starts on (`Fri 22:00-06:00` runs into Saturday morning); `24:00` ends at midnight. A start in
an hour skipped by a clock change begins when the clock jumps past it; an hour that occurs twice is
inside the window both times. Several windows active at once: the highest count wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

FORM = (
    "windows '[days] HH:MM-HH:MM <IANA zone>=<workers>' separated by ';', "
    "e.g. 'Mon-Fri 08:00-18:00 Europe/London=4; Sat,Sun 10:00-14:00 UTC=1' "
    "(days Mon..Sun as lists and ranges, none: every day; an end before the start runs overnight)"
)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(
    r"^(?:(?P<days>[A-Za-z][A-Za-z,\- ]*?)\s+)?"
    r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s+"
    r"(?P<zone>[^\s=]+)\s*=\s*(?P<count>[^\s]+)$"
)


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # datetime.weekday() of the days it starts on
    start: int  # seconds after local midnight
    end: int  # seconds after local midnight (86400 = 24:00); end <= start: overnight
    zone: tzinfo
    minimum: int
    text: str  # as written, normalised spacing: for logs

    def active(self, now: datetime) -> bool:
        """Whether `now` (an aware datetime) falls inside this window, by the zone's wall clock."""
        local = now.astimezone(self.zone)
        second = local.hour * 3600 + local.minute * 60 + local.second
        day = local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= second < self.end
        # overnight: the evening part on a listed day, the morning part on the day after one
        return (day in self.days and second >= self.start) or (
            (day - 1) % 7 in self.days and second < self.end
        )


@dataclass(frozen=True)
class Schedule:
    windows: tuple[Window, ...] = ()

    @property
    def highest(self) -> int:
        """The largest minimum any window asks for (0 without windows): checked against the maximum."""
        return max((w.minimum for w in self.windows), default=0)

    def __str__(self) -> str:
        return "; ".join(w.text for w in self.windows)

    def __repr__(self) -> str:  # PreloadSettings' repr is logged at start: show the schedule as written
        return repr(str(self))


def _days(text: str | None, part: str) -> frozenset[int]:
    if text is None:
        return frozenset(range(7))
    days: set[int] = set()
    for item in text.replace(" ", "").lower().split(","):
        ends = item.split("-")
        if len(ends) > 2 or any(end not in DAYS for end in ends):
            raise _error(part, f"days {text!r} are not Mon..Sun names, lists (Sat,Sun) or ranges (Mon-Fri)")
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
    return frozenset(days)


def _seconds(text: str, part: str, *, end: bool) -> int:
    hours, minutes = (int(x) for x in text.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        allowed = "00:00..24:00" if end else "00:00..23:59"
        raise _error(part, f"time {text!r} is not a time of day {allowed}")
    return hours * 3600 + minutes * 60


def _zone(name: str, part: str) -> tzinfo:
    if name == "UTC":
        return UTC  # needs no time zone database
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _error(
            part,
            f"time zone {name!r} is not in this Python's time zone database (an IANA name such as "
            "Europe/London; if the name is right, install the tzdata package or the OS's tzdata)",
        ) from None


def _error(part: str, problem: str) -> ValueError:
    return ValueError(f"window {part!r}: {problem}; allowed: {FORM}")


def parse_window(part: str) -> Window:
    """One window; ValueError naming it, what is wrong, and the allowed form."""
    match = _WINDOW.match(part)
    if match is None:
        raise _error(part, "not of the form '[days] HH:MM-HH:MM <zone>=<workers>'")
    days = _days(match["days"], part)
    start = _seconds(match["start"], part, end=False)
    end = _seconds(match["end"], part, end=True)
    if start == end:
        raise _error(part, "start equals end (a whole day is 00:00-24:00)")
    zone = _zone(match["zone"], part)
    count = match["count"]
    if not count.isdigit() or int(count) < 1:
        raise _error(part, f"workers {count!r} is not an integer >= 1")
    prefix = f"{match['days'].replace(' ', '')} " if match["days"] else ""
    text = f"{prefix}{match['start']}-{match['end']} {match['zone']}={int(count)}"
    return Window(days, start, end, zone, int(count), text)


def parse_schedule(text: str | None) -> Schedule:
    """The schedule written in `text` (None or blank: none); ValueError naming the bad window."""
    if text is None or not text.strip():
        return Schedule()
    return Schedule(tuple(parse_window(part.strip()) for part in text.split(";")))


def active_windows(schedule: Schedule, now: datetime) -> tuple[Window, ...]:
    """The windows in force at `now`, an aware datetime (a naive one has no defined instant)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be an aware datetime, got naive {now.isoformat()}")
    return tuple(w for w in schedule.windows if w.active(now))
