"""Schedules: crontab (Celery's semantics), cron strings, intervals, one-offs, and the DST rule.

The DST tests drive a :class:`Plan` with a fake clock, minute by minute, across
spring-forward and fall-back days in three zones, and count what it sends.
"""

from __future__ import annotations

import datetime as dt
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from amqptasks.beat.entries import Entry
from amqptasks.beat.plan import Plan, Record
from amqptasks.beat.schedules import (
    at,
    cron,
    crontab,
    every,
    parse_field,
    schedule_from_dict,
    to_schedule,
    wall_to_utc,
)
from amqptasks.exceptions import ConfigError

UTC = dt.timezone.utc


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# -- crontab fields, as Celery reads them ----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "name", "expected"),
    [
        ("*", "hour", set(range(24))),
        ("*/15", "minute", {0, 15, 30, 45}),
        ("1-5", "day_of_week", {1, 2, 3, 4, 5}),
        ("mon-fri", "day_of_week", {1, 2, 3, 4, 5}),
        ("sun", "day_of_week", {0}),
        (7, "day_of_week", {0}),
        ("fri-mon", "day_of_week", {5, 6, 0, 1}),
        ("9-17/4", "hour", {9, 13, 17}),
        ("1,15", "day_of_month", {1, 15}),
        ("jan,jul", "month_of_year", {1, 7}),
        ([0, 30], "minute", {0, 30}),
    ],
)
def test_crontab_fields_expand_as_celery(value: object, name: str, expected: set[int]) -> None:
    assert parse_field(value, name) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"minute": 60}, "minute: 60 is out of range 0-59"),
        ({"hour": "25"}, "hour: 25 is out of range 0-23"),
        ({"day_of_week": "funday"}, "is not a number or a name"),
        ({"minute": "*/0"}, "step must be >= 1"),
        ({"minute": "1-2-3"}, "cannot read"),
    ],
)
def test_bad_crontab_fields_are_refused_in_one_line(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        crontab(**kwargs)  # type: ignore[arg-type]


def test_crontab_day_of_month_and_day_of_week_must_both_match() -> None:
    # Celery: the 13th that is a Friday; a cron string would take either.
    friday_13 = crontab(minute=0, hour=0, day_of_month=13, day_of_week="fri")
    found = list(friday_13.occurrences(utc(2026, 1, 1), utc(2027, 1, 1), UTC))
    assert [instant.date() for instant in found] == [
        dt.date(2026, 2, 13),
        dt.date(2026, 3, 13),
        dt.date(2026, 11, 13),
    ]
    either = cron("0 0 13 * fri")
    assert (
        len(list(either.occurrences(utc(2026, 1, 1), utc(2026, 2, 1), UTC))) == 6
    )  # 13th + 5 Fridays


def test_crontab_next_after_is_strictly_after() -> None:
    nightly = crontab(minute=0, hour=3)
    assert nightly.next_after(utc(2026, 5, 1, 3), UTC) == utc(2026, 5, 2, 3)
    assert nightly.next_after(utc(2026, 5, 1, 2, 59, 59), UTC) == utc(2026, 5, 1, 3)


def test_crontab_in_a_time_zone() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    assert crontab(minute=0, hour=9).next_after(utc(2026, 5, 1), shanghai) == utc(2026, 5, 1, 1)


def test_impossible_crontab_never_fires() -> None:
    assert (
        crontab(minute=0, hour=0, day_of_month=30, month_of_year=2).next_after(utc(2026, 1, 1), UTC)
        is None
    )


def test_cron_strings_use_cron_semantics_and_refuse_bad_ones() -> None:
    weekdays = cron("0 3 * * 1-5")
    found = list(weekdays.occurrences(utc(2026, 5, 1), utc(2026, 5, 8), UTC))  # Fri 1 May
    assert [instant.day for instant in found] == [1, 4, 5, 6, 7]
    assert "Monday through Friday" in weekdays.describe()
    with pytest.raises(ConfigError, match="bad cron expression"):
        cron("61 * * * *")


def test_every_counts_real_seconds_from_the_epoch() -> None:
    assert every(60).next_after(utc(2026, 5, 1, 12, 0, 30), UTC) == utc(2026, 5, 1, 12, 1)
    assert every(dt.timedelta(minutes=5)).next_after(utc(2026, 5, 1, 12, 5), UTC) == utc(
        2026, 5, 1, 12, 10
    )
    anchored = every(10, anchor=utc(2026, 1, 1, 0, 0, 3))
    assert anchored.next_after(utc(2026, 5, 1), UTC) == utc(2026, 5, 1, 0, 0, 3)
    for bad in (0, -1, float("inf"), "10"):
        with pytest.raises(ConfigError):
            every(bad)  # type: ignore[arg-type]


def test_at_fires_once_and_reads_naive_times_in_the_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    once = at(dt.datetime(2026, 7, 1, 9, 0))
    assert once.next_after(utc(2026, 1, 1), paris) == utc(2026, 7, 1, 7)
    assert once.next_after(utc(2026, 7, 1, 7), paris) is None


@pytest.mark.parametrize(
    "schedule",
    [
        crontab(minute="*/5", hour="9-17", day_of_week="mon-fri"),
        cron("0 3 * * 1-5"),
        every(30),
        at(utc(2026, 1, 1)),
    ],
)
def test_schedules_survive_their_portable_form(schedule: object) -> None:
    assert schedule_from_dict(schedule.to_dict()) == schedule  # type: ignore[attr-defined]


def test_to_schedule_reads_what_users_write() -> None:
    assert to_schedule(30) == every(30)
    assert to_schedule(dt.timedelta(seconds=30)) == every(30)
    assert to_schedule("0 3 * * *") == cron("0 3 * * *")
    with pytest.raises(ConfigError, match="cannot use"):
        to_schedule(object())


# -- the DST rule --------------------------------------------------------------------------


def test_wall_times_in_the_gap_run_when_the_clocks_jump() -> None:
    paris = ZoneInfo("Europe/Paris")  # 2026-03-29: 02:00 CET -> 03:00 CEST (01:00 UTC)
    assert wall_to_utc(dt.datetime(2026, 3, 29, 2, 30), paris) == utc(2026, 3, 29, 1)
    assert wall_to_utc(dt.datetime(2026, 3, 29, 2, 0), paris) == utc(2026, 3, 29, 1)
    # fall back, 2026-10-25: 02:30 happens at 00:30 UTC (CEST) and 01:30 UTC (CET): the first
    assert wall_to_utc(dt.datetime(2026, 10, 25, 2, 30), paris) == utc(2026, 10, 25, 0, 30)


#: (zone, spring-forward day, fall-back day, a wall time skipped, a wall time repeated)
DST_DAYS = [
    ("Europe/Paris", dt.date(2026, 3, 29), dt.date(2026, 10, 25), (2, 30), (2, 30)),
    ("America/New_York", dt.date(2026, 3, 8), dt.date(2026, 11, 1), (2, 30), (1, 30)),
    ("Australia/Sydney", dt.date(2026, 10, 4), dt.date(2026, 4, 5), (2, 30), (2, 30)),
]


def run_plan(entry: Entry, start: dt.datetime, hours: int) -> list[dt.datetime]:
    """Drive a Plan with a fake clock, one minute at a time; the instants it sends."""
    plan = Plan()
    plan.take_over([(entry, None)], Record(handled_through=start), start)
    sent: list[dt.datetime] = []
    for minute in range(1, hours * 60 + 1):
        sent += [
            occurrence.instant for occurrence in plan.due(start + dt.timedelta(minutes=minute))
        ]
    return sent


@pytest.mark.parametrize(("zone", "spring", "fall", "skipped", "repeated"), DST_DAYS)
@pytest.mark.parametrize("kind", ["crontab", "cron"])
def test_a_job_in_the_skipped_or_repeated_hour_runs_once_on_dst_days(
    zone: str,
    spring: dt.date,
    fall: dt.date,
    skipped: tuple[int, int],
    repeated: tuple[int, int],
    kind: str,
) -> None:
    tz = ZoneInfo(zone)
    for day, (hour, minute) in ((spring, skipped), (fall, repeated)):
        schedule = (
            crontab(minute=minute, hour=hour)
            if kind == "crontab"
            else cron(f"{minute} {hour} * * *")
        )
        entry = Entry("nightly", "proj.nightly", schedule, timezone=zone)
        start = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(12), tz).astimezone(UTC)
        sent = run_plan(entry, start, 72)
        local_days = [instant.astimezone(tz).date() for instant in sent]
        assert local_days == [day, day + dt.timedelta(days=1), day + dt.timedelta(days=2)], sent
        on_the_day = sent[0].astimezone(tz)
        if day == spring:  # the wall time does not exist: it runs as the clocks jump
            assert on_the_day.hour == hour + 1 and on_the_day.minute == 0
        else:  # it exists twice: it runs at the first
            assert (on_the_day.hour, on_the_day.minute, on_the_day.fold) == (hour, minute, 0)
            assert sent[0].utcoffset() == dt.timedelta(0)
            assert (
                on_the_day.utcoffset()
                == dt.datetime.combine(day - dt.timedelta(days=1), dt.time(12), tz).utcoffset()
            )


@pytest.mark.parametrize(("zone", "spring", "fall", "skipped", "repeated"), DST_DAYS)
def test_skipped_wall_times_merge_into_one_run(
    zone: str, spring: dt.date, fall: dt.date, skipped: tuple[int, int], repeated: tuple[int, int]
) -> None:
    tz = ZoneInfo(zone)
    every_quarter = Entry("q", "proj.q", crontab(minute="*/15"), timezone=zone)
    start = dt.datetime.combine(spring, dt.time(0), tz).astimezone(UTC)
    sent = run_plan(every_quarter, start - dt.timedelta(minutes=1), 25)
    on_the_day = [instant for instant in sent if instant.astimezone(tz).date() == spring]
    # That day has 23 hours: the four skipped quarter hours merge into the jump (03:00).
    assert len(on_the_day) == len(set(on_the_day)) == 23 * 4
    assert all(b > a for a, b in pairwise(sent))


def test_every_ignores_dst() -> None:
    entry = Entry("e", "proj.e", every(3600), timezone="Europe/Paris")
    start = utc(2026, 3, 28, 12)
    sent = run_plan(entry, start, 48)
    assert len(sent) == 48
    assert all((b - a) == dt.timedelta(hours=1) for a, b in pairwise(sent))
