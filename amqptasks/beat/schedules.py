"""Schedules: when an entry's occurrences fall, worked out from a datetime (pure: no I/O).

Every schedule answers one question, :meth:`Schedule.next_after`: the first
occurrence strictly after a UTC instant, in a time zone. Occurrences are UTC
instants, the same in every process that computes them, so an occurrence can be
named (entry + instant) and fired once.

Wall-clock schedules (:class:`crontab`, cron strings, a naive :class:`at`) are
matched against local time in the entry's zone, then turned into instants by the
**DST rule** (:func:`wall_to_utc`):

- a local time that does not exist (skipped when clocks spring forward) runs
  once, at the instant the clocks jump (02:30 on a 02:00 -> 03:00 day runs at
  03:00 local, and several skipped times merge into that one run);
- a local time that happens twice (clocks fall back) runs once, at its first
  occurrence.

Interval schedules (:class:`every`) count real seconds from an anchor and do
not care about wall clocks.

Example:
    >>> crontab(minute=30, hour=2).next_after(now, ZoneInfo("Europe/Paris"))
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cronsim

from amqptasks.exceptions import ConfigError

__all__ = [
    "Schedule",
    "at",
    "cron",
    "crontab",
    "every",
    "get_zone",
    "schedule_from_dict",
    "to_schedule",
    "wall_to_utc",
]

UTC = dt.timezone.utc
#: The Unix epoch: the default anchor of :class:`every`.
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
#: How far a wall-clock search goes before giving up (a crontab for 30 February).
SEARCH_YEARS = 5


def get_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``"Europe/Paris"``), or a one-line ConfigError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {name!r} (expected an IANA name)") from exc


def wall_to_utc(wall: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """The UTC instant of naive local time ``wall`` in ``zone``, by the DST rule.

    A time in a spring-forward gap maps to the instant the gap ends; a time
    that happens twice maps to its first occurrence.
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first  # exists; fold=0 is the earlier of two when it repeats
    # In the gap: fold=0 reads ``wall`` with the offset before the jump, fold=1 with the
    # offset after, so the jump lies between those two instants. Find it to the second.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first
    if low > high:
        low, high = high, low
    offset_before = low.astimezone(zone).utcoffset()
    while (high - low) > dt.timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == offset_before:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


def _utc(instant: dt.datetime) -> dt.datetime:
    if instant.tzinfo is None:
        raise ConfigError(f"expected an aware datetime, got naive {instant.isoformat()}")
    return instant.astimezone(UTC)


class Schedule:
    """Base of schedules: :meth:`next_after` plus a description and a portable form."""

    #: Whether occurrences follow local wall-clock time (and so the DST rule).
    wall_clock = False

    def next_after(self, after: dt.datetime, zone: dt.tzinfo) -> dt.datetime | None:
        """The first occurrence strictly after UTC instant ``after`` (None: no more)."""
        raise NotImplementedError

    def occurrences(
        self, after: dt.datetime, until: dt.datetime, zone: dt.tzinfo
    ) -> Iterable[dt.datetime]:
        """Occurrences in ``(after, until]``, in order."""
        current = after
        while True:
            found = self.next_after(current, zone)
            if found is None or found > until:
                return
            yield found
            current = found

    def describe(self) -> str:
        """The schedule in words."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form; :func:`schedule_from_dict` reads it back."""
        raise NotImplementedError


class _WallClock(Schedule):
    """A schedule matched against local time, one minute at a time."""

    wall_clock = True

    def _next_wall(self, wall: dt.datetime) -> dt.datetime | None:
        """The first matching naive local minute at or after ``wall``."""
        raise NotImplementedError

    def next_after(self, after: dt.datetime, zone: dt.tzinfo) -> dt.datetime | None:
        after = _utc(after)
        # Local wall time of ``after`` (its minute): the mapping from wall times to instants
        # never goes backwards, so no later wall time can map before it.
        wall = after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
        limit = wall + dt.timedelta(days=366 * SEARCH_YEARS)
        while wall <= limit:
            found = self._next_wall(wall)
            if found is None or found > limit:
                return None
            instant = wall_to_utc(found, zone)
            if instant > after:
                return instant
            wall = found + dt.timedelta(minutes=1)
        return None


# -- crontab (Celery's argument names and semantics) ---------------------------------------

_DAY_NAMES = {
    name: number for number, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])
}
_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_FIELD_RANGES = {
    "minute": (0, 59),
    "hour": (0, 23),
    "day_of_week": (0, 6),
    "day_of_month": (1, 31),
    "month_of_year": (1, 12),
}
_PART = re.compile(r"^(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?$")


def _number(text: str, name: str, names: Mapping[str, int]) -> int:
    text = text.strip().lower()
    if text.isdigit():
        value = int(text)
        return 0 if name == "day_of_week" and value == 7 else value
    if text[:3] in names:  # "mon", "monday", "jan", "january"
        return names[text[:3]]
    raise ConfigError(f"crontab {name}: {text!r} is not a number or a name")


def parse_field(value: object, name: str) -> frozenset[int]:
    """Expand one crontab field as Celery does: ``*``, ``*/15``, ``1-5``, ``mon-fri``,
    ``1,15``, ``9-17/2``, an int, or an iterable of ints.

    Raises:
        ConfigError: a value out of the field's range, or unreadable.
    """
    low, high = _FIELD_RANGES[name]
    names: Mapping[str, int] = (
        _DAY_NAMES if name == "day_of_week" else _MONTH_NAMES if name == "month_of_year" else {}
    )
    found: set[int] = set()
    if isinstance(value, bool):
        raise ConfigError(f"crontab {name}: expected a number or a string, got {value!r}")
    if isinstance(value, int):
        found.add(0 if name == "day_of_week" and value == 7 else value)
    elif isinstance(value, str):
        for part in value.replace(" ", "").lower().split(","):
            match = _PART.match(part)
            if match is None:
                raise ConfigError(f"crontab {name}: cannot read {part!r} in {value!r}")
            span, step_text = match["range"], match["step"]
            if span == "*":
                start, stop = low, high
            elif "-" in span:
                first, last = span.split("-", 1)
                start, stop = _number(first, name, names), _number(last, name, names)
                if name == "day_of_week" and stop == 0 and start > 0:
                    stop = 7  # "1-7": Monday to Sunday (7 is Sunday too)
            else:
                start = _number(span, name, names)
                stop = high if step_text else start
            step = int(step_text) if step_text else 1
            if step < 1:
                raise ConfigError(f"crontab {name}: step must be >= 1 in {value!r}")
            if stop < start:  # Celery reads "fri-mon" and "22-2" as wrapping around
                found.update(range(start, high + 1, step))
                found.update(range(low, stop + 1, step))
            else:
                found.update(range(start, stop + 1, step))
    elif isinstance(value, Iterable):
        for item in value:
            found |= parse_field(item, name)
    else:
        raise ConfigError(f"crontab {name}: expected a number or a string, got {value!r}")
    if name == "day_of_week" and 7 in found:
        found = (found - {7}) | {0}
    bad = sorted(number for number in found if not low <= number <= high)
    if bad:
        raise ConfigError(f"crontab {name}: {bad[0]} is out of range {low}-{high}")
    if not found:
        raise ConfigError(f"crontab {name}: {value!r} matches nothing")
    return frozenset(found)


@dataclass(frozen=True, eq=False)
class crontab(_WallClock):
    """A cron-like schedule with Celery's arguments: every field must match (AND).

    ``day_of_week`` counts from Sunday = 0 (7 is Sunday too) and takes names
    (``"mon-fri"``). Unlike a cron string, ``day_of_month`` and ``day_of_week``
    both restrict when both are given, as in Celery.

    Example:
        >>> crontab(minute=0, hour=3, day_of_week="mon-fri")
    """

    minute: object = "*"
    hour: object = "*"
    day_of_week: object = "*"
    day_of_month: object = "*"
    month_of_year: object = "*"
    _sets: tuple[frozenset[int], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        sets = tuple(parse_field(getattr(self, name), name) for name in _FIELD_RANGES)
        object.__setattr__(self, "_sets", sets)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, crontab) and self._sets == other._sets

    def __hash__(self) -> int:
        return hash(self._sets)

    def _next_wall(self, wall: dt.datetime) -> dt.datetime | None:
        minutes, hours, weekdays, days, months = (sorted(s) for s in self._sets)
        day = wall.date()
        last = day + dt.timedelta(days=366 * SEARCH_YEARS)
        first_day = True
        while day <= last:
            if day.month in months and day.day in days and (day.isoweekday() % 7) in weekdays:
                for hour in hours:
                    if first_day and hour < wall.hour:
                        continue
                    for minute in minutes:
                        if first_day and hour == wall.hour and minute < wall.minute:
                            continue
                        return dt.datetime.combine(day, dt.time(hour, minute))
            day += dt.timedelta(days=1)
            first_day = False
        return None

    def describe(self) -> str:
        fields = [_field_text(getattr(self, name)) for name in _FIELD_RANGES]
        minute, hour, dow, dom, month = fields
        return f"crontab {minute} {hour} {dom} {month} {dow} (m h dom mon dow, all must match)"

    def to_dict(self) -> dict[str, Any]:
        return {"crontab": {name: _field_text(getattr(self, name)) for name in _FIELD_RANGES}}


def _field_text(value: object) -> str:
    if isinstance(value, str | int):
        return str(value)
    if isinstance(value, Iterable):
        return ",".join(str(item) for item in value)
    return str(value)


# -- cron strings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class cron(_WallClock):
    """A cron expression (``"0 3 * * 1-5"``), parsed and matched by cronsim.

    Standard cron semantics: when both day-of-month and day-of-week are
    restricted, either matching is enough (``L``, ``W`` and ``#`` work too).
    """

    expression: str

    def __post_init__(self) -> None:
        try:
            cronsim.CronSim(self.expression, dt.datetime(2000, 1, 1))
        except cronsim.CronSimError as exc:
            raise ConfigError(f"bad cron expression {self.expression!r}: {exc}") from None

    def _next_wall(self, wall: dt.datetime) -> dt.datetime | None:
        # cronsim yields times strictly after its start; on naive datetimes it does plain
        # wall-clock arithmetic and leaves DST to wall_to_utc.
        try:
            return next(cronsim.CronSim(self.expression, wall - dt.timedelta(minutes=1)))
        except StopIteration:
            return None

    def describe(self) -> str:
        try:
            words = cronsim.CronSim(self.expression, dt.datetime(2000, 1, 1)).explain()
        except Exception:  # explain() covers most but not every expression
            words = ""
        return f"cron {self.expression!r}" + (f" ({words})" if words else "")

    def to_dict(self) -> dict[str, Any]:
        return {"cron": self.expression}


# -- intervals and one-offs -----------------------------------------------------------------


@dataclass(frozen=True)
class every(Schedule):
    """Every ``seconds`` (or a timedelta) of real time, counted from ``anchor``.

    Occurrences are ``anchor + k * seconds``: with the default anchor (the Unix
    epoch) ``every(60)`` fires at each whole UTC minute, in every replica alike.
    """

    seconds: float
    anchor: dt.datetime = EPOCH

    def __init__(self, seconds: float | dt.timedelta, anchor: dt.datetime | None = None):
        value = seconds.total_seconds() if isinstance(seconds, dt.timedelta) else seconds
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"every() takes seconds or a timedelta, got {seconds!r}")
        if not value > 0 or math.isinf(value):
            raise ConfigError(f"every() needs a finite number of seconds > 0, got {value!r}")
        object.__setattr__(self, "seconds", float(value))
        object.__setattr__(self, "anchor", _utc(anchor) if anchor is not None else EPOCH)

    def next_after(self, after: dt.datetime, zone: dt.tzinfo) -> dt.datetime | None:
        step = round(self.seconds * 1_000_000)
        elapsed = (_utc(after) - self.anchor) // dt.timedelta(microseconds=1)
        count = elapsed // step + 1
        return self.anchor + dt.timedelta(microseconds=count * step)

    def describe(self) -> str:
        text = f"{self.seconds:g}"
        return f"every {text} second{'s' if text != '1' else ''}"

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"every": self.seconds}
        if self.anchor != EPOCH:
            found["anchor"] = self.anchor.isoformat()
        return found


@dataclass(frozen=True)
class at(Schedule):
    """Once, at ``when``: aware, or naive = local time in the entry's zone (DST rule)."""

    when: dt.datetime

    def __post_init__(self) -> None:
        if not isinstance(self.when, dt.datetime):
            raise ConfigError(f"at() takes a datetime, got {self.when!r}")

    @property
    def wall_clock(self) -> bool:  # type: ignore[override]
        return self.when.tzinfo is None

    def next_after(self, after: dt.datetime, zone: dt.tzinfo) -> dt.datetime | None:
        instant = wall_to_utc(self.when, zone) if self.when.tzinfo is None else _utc(self.when)
        return instant if instant > _utc(after) else None

    def describe(self) -> str:
        return f"once at {self.when.isoformat()}"

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.when.isoformat()}


def to_schedule(value: object) -> Schedule:
    """A schedule from what users write: a Schedule, seconds, a timedelta, a cron
    string, a datetime (one-off), or a Celery ``schedule``-like object with ``run_every``.

    Raises:
        ConfigError: anything else.
    """
    if isinstance(value, Schedule):
        return value
    if isinstance(value, dt.timedelta) or (
        isinstance(value, int | float) and not isinstance(value, bool)
    ):
        return every(value)
    if isinstance(value, str):
        return cron(value)
    if isinstance(value, dt.datetime):
        return at(value)
    run_every = getattr(value, "run_every", None)
    if isinstance(run_every, dt.timedelta):
        return every(run_every)
    raise ConfigError(
        f"cannot use {value!r} as a schedule: give crontab(), every(), a cron string, "
        "seconds, a timedelta or a datetime"
    )


def schedule_from_dict(data: Mapping[str, Any]) -> Schedule:
    """Read back :meth:`Schedule.to_dict` (entries kept on the broker).

    Raises:
        ConfigError: an unknown form.
    """
    if "crontab" in data:
        return crontab(**dict(data["crontab"]))
    if "cron" in data:
        return cron(str(data["cron"]))
    if "every" in data:
        anchor = data.get("anchor")
        return every(float(data["every"]), dt.datetime.fromisoformat(anchor) if anchor else None)
    if "at" in data:
        return at(dt.datetime.fromisoformat(str(data["at"])))
    raise ConfigError(f"unknown schedule form {dict(data)!r}")
