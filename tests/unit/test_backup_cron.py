"""Cron expressions of backup schedules: parsing, the last firing, the period."""

from __future__ import annotations

import datetime as dt

import pytest
from vpes_operator.backup import cron

pytestmark = pytest.mark.unit


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("expression", "now", "fired"),
    [
        ("17 3 * * *", "2026-12-01T10:00", "2026-12-01T03:17"),
        ("17 3 * * *", "2026-12-01T03:16", "2026-11-30T03:17"),
        ("17 3 * * *", "2026-12-01T03:17", "2026-12-01T03:17"),
        ("*/15 * * * *", "2026-12-01T10:44", "2026-12-01T10:30"),
        ("0 0 1 * *", "2026-12-15T00:00", "2026-12-01T00:00"),
        ("0 0 1 * *", "2026-12-01T00:00", "2026-12-01T00:00"),
        ("30 2 * * sun", "2026-12-01T00:00", "2026-11-29T02:30"),  # 2026-12-01 is a Tuesday
        ("30 2 * * 7", "2026-12-01T00:00", "2026-11-29T02:30"),
        ("0 4 * * 1-5", "2026-11-29T12:00", "2026-11-27T04:00"),
        ("0 12 * jan,jul *", "2026-12-01T00:00", "2026-07-31T12:00"),
        ("0 6,18 * * *", "2026-12-01T17:59", "2026-12-01T06:00"),
        ("5-10/5 1 * * *", "2026-12-01T01:09", "2026-12-01T01:05"),
        # day-of-month and day-of-week both restricted: either matches
        ("0 0 13 * fri", "2026-12-01T00:00", "2026-11-27T00:00"),
    ],
)
def test_previous_fire(expression: str, now: str, fired: str) -> None:
    assert cron.previous_fire(cron.parse(expression), at(now)) == at(fired)


def test_a_schedule_that_never_fires_has_no_previous_firing() -> None:
    assert cron.previous_fire(cron.parse("0 0 30 2 *"), at("2026-12-01T00:00")) is None


@pytest.mark.parametrize(
    ("expression", "period"),
    [
        ("17 3 * * *", dt.timedelta(days=1)),
        ("0 */6 * * *", dt.timedelta(hours=6)),
        ("0 3 * * sun", dt.timedelta(days=7)),
        ("*/5 * * * *", dt.timedelta(minutes=5)),
    ],
)
def test_interval(expression: str, period: dt.timedelta) -> None:
    assert cron.interval(cron.parse(expression), at("2026-12-01T12:00")) == period


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("* * * *", "five fields"),
        ("60 * * * *", "outside 0-59"),
        ("* 24 * * *", "outside 0-23"),
        ("* * 0 * *", "outside 1-31"),
        ("* * * 13 *", "outside 1-12"),
        ("*/0 * * * *", "bad step"),
        ("a * * * *", "not a number"),
        ("5-1 * * * *", "outside"),
    ],
)
def test_invalid_expressions_say_what_is_wrong(expression: str, says: str) -> None:
    with pytest.raises(cron.CronError, match=says):
        cron.parse(expression)
