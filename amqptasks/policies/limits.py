"""Limits a call may carry: its priority, rate limit and time limits (pure; no I/O).

Checked where a task is declared (``@app.task``) and where it is called
(``apply_async``), and read again by the worker that runs it. How the worker
enforces them is in :mod:`amqptasks.worker.ratelimit`,
:mod:`amqptasks.worker.timelimits` and the pool modules.

A call's time limits come from, in order: the message's ``timelimit`` header
(``apply_async(time_limit=, soft_time_limit=)``, Celery's ``[hard, soft]``),
the task's options (``@app.task(time_limit=, soft_time_limit=)``), then the
worker's (``--time-limit``/``--soft-time-limit``, settings ``task_time_limit``/
``task_soft_time_limit``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from amqptasks.exceptions import ConfigError

#: Seconds per unit of a rate limit.
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def check_priority(priority: Any) -> None:
    """Refuse a priority that is not an integer from 0 to 255 (None is no priority).

    Raises:
        ConfigError: naming the value.
    """
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 255
    ):
        raise ConfigError(f"priority must be an integer from 0 to 255, got {priority!r}")


def parse_rate_limit(value: str | float | None) -> float | None:
    """Tasks per second for a Celery-style rate limit; None for no limit.

    ``"10/s"``, ``"100/m"`` and ``"1000/h"`` are per second, minute and hour;
    a bare number (``10`` or ``"10"``) is per second; ``None``, ``0`` and ``""``
    mean no limit.

    Raises:
        ConfigError: for anything else.

    >>> parse_rate_limit("100/m")
    1.6666666666666667
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ConfigError(f"rate_limit must look like '10/s', '100/m' or '1000/h', got {value!r}")
    if isinstance(value, int | float):
        amount, per = float(value), 1.0
    elif isinstance(value, str):
        text, _, unit = value.strip().partition("/")
        unit = unit.strip().lower()
        try:
            amount = float(text)
        except ValueError:
            amount = math.nan
        if (unit and unit[:1] not in _UNITS) or math.isnan(amount):
            raise ConfigError(
                f"rate_limit must look like '10/s', '100/m' or '1000/h', got {value!r}"
            )
        per = _UNITS[unit[:1]] if unit else 1.0
    else:
        raise ConfigError(f"rate_limit must look like '10/s', '100/m' or '1000/h', got {value!r}")
    if amount < 0 or math.isinf(amount):
        raise ConfigError(f"rate_limit must be a finite number >= 0 per unit, got {value!r}")
    if amount == 0:
        return None
    return amount / per


@dataclass(frozen=True, slots=True)
class TimeLimits:
    """A call's soft and hard time limits, in seconds (None: no limit)."""

    soft: float | None = None
    hard: float | None = None

    def __bool__(self) -> bool:
        return self.soft is not None or self.hard is not None

    def describe(self) -> str:
        """``soft 5s, hard 10s`` for logs."""
        parts = []
        if self.soft is not None:
            parts.append(f"soft {self.soft:g}s")
        if self.hard is not None:
            parts.append(f"hard {self.hard:g}s")
        return ", ".join(parts) or "none"


def check_time_limits(soft: Any, hard: Any, where: str) -> None:
    """Refuse limits that are not positive numbers, or a soft limit not below the hard one.

    Raises:
        ConfigError: naming ``where`` and both options.
    """
    for name, value in (("soft_time_limit", soft), ("time_limit", hard)):
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not value > 0
            or math.isinf(value)
        ):
            raise ConfigError(f"{where}: {name} must be a number of seconds > 0, got {value!r}")
    if soft is not None and hard is not None and soft >= hard:
        raise ConfigError(
            f"{where}: soft_time_limit ({soft!r}) must be below time_limit ({hard!r}); "
            f"the hard limit would stop the task before the soft one warned it"
        )


def _header_value(value: Any) -> float | None:
    """A limit from a message header: a number > 0, anything else is no limit."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number > 0 and not math.isinf(number) else None


def resolve_time_limits(
    header: tuple[Any, Any],
    task: tuple[float | None, float | None],
    worker: tuple[float | None, float | None],
) -> TimeLimits:
    """The limits that apply: the message's, else the task's, else the worker's.

    Each argument is ``(soft, hard)``. Each limit is chosen on its own, so a call
    may bring a hard limit and inherit the task's soft one. A soft limit that is
    not below the hard one is dropped (the hard limit comes first anyway).
    """
    soft = _header_value(header[0])
    hard = _header_value(header[1])
    if soft is None:
        soft = task[0] if task[0] is not None else worker[0]
    if hard is None:
        hard = task[1] if task[1] is not None else worker[1]
    if soft is not None and hard is not None and soft >= hard:
        soft = None
    return TimeLimits(soft=soft, hard=hard)
