"""Five-field cron expressions (minute hour day-of-month month day-of-week, UTC).

Only what a backup schedule needs: the last time an expression fired at or
before a moment, and the usual interval between two firings. Each field takes
`*`, numbers, ranges `a-b`, steps `*/n` or `a-b/n`, and lists `a,b`; day and
month names (`mon`, `jan`) too. As in classic cron, when both day-of-month and
day-of-week are restricted a day matches if either does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (low, high, names) of each field.
_FIELDS = [
    (0, 59, None),
    (0, 23, None),
    (1, 31, None),
    (1, 12, _MONTHS),
    (0, 7, _DAYS),
]
# How far back a search goes: an expression that never fires (Feb 30) stops here.
_HORIZON_DAYS = 366 * 5


class CronError(ValueError):
    """The expression is not a valid five-field cron expression."""


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    def day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        by_date = day.day in self.days
        by_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return by_weekday
        if self.any_weekday:
            return by_date
        return by_date or by_weekday


def _value(text: str, low: int, names: list[str] | None) -> int:
    if names and text.lower() in names:
        return names.index(text.lower()) + (low if names is _MONTHS else 0)
    if not text.isdigit():
        raise CronError(f"{text!r} is not a number")
    return int(text)


def _field(text: str, index: int) -> frozenset[int]:
    low, high, names = _FIELDS[index]
    out: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"bad step in {part!r}")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            start, end = _value(a, low, names), _value(b, low, names)
        else:
            start = _value(body, low, names)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise CronError(f"{part!r} is outside {low}-{high}")
        out.update(range(start, end + 1, step))
    if index == 4 and 7 in out:  # 7 is Sunday too
        out.discard(7)
        out.add(0)
    return frozenset(out)


def parse(expression: str) -> Cron:
    parts = expression.split()
    if len(parts) != 5:
        raise CronError(f"{expression!r} must have five fields: minute hour day month weekday")
    try:
        minutes, hours, days, months, weekdays = (_field(p, i) for i, p in enumerate(parts))
    except CronError as e:
        raise CronError(f"{expression!r}: {e}") from None
    return Cron(minutes, hours, days, months, weekdays, parts[2] == "*", parts[4] == "*")


def previous_fire(cron: Cron, at: dt.datetime) -> dt.datetime | None:
    """The last moment at or before `at` (UTC, whole minutes) the expression fired."""
    at = at.astimezone(dt.UTC).replace(second=0, microsecond=0)
    day = at.date()
    for back in range(_HORIZON_DAYS):
        if cron.day_matches(day):
            hours = sorted((h for h in cron.hours if back or h <= at.hour), reverse=True)
            for hour in hours:
                limit = at.minute if (not back and hour == at.hour) else 59
                minutes = [m for m in cron.minutes if m <= limit]
                if minutes:
                    return dt.datetime(
                        day.year, day.month, day.day, hour, max(minutes), tzinfo=dt.UTC
                    )
        day -= dt.timedelta(days=1)
    return None


def interval(cron: Cron, at: dt.datetime) -> dt.timedelta | None:
    """The time between the last two firings at or before `at`: the schedule's period."""
    last = previous_fire(cron, at)
    if last is None:
        return None
    before = previous_fire(cron, last - dt.timedelta(minutes=1))
    return None if before is None else last - before
