"""Time limits: which apply to a call, and whether the broker would cut them short (pure).

A call's limits come from, in order: the message's ``timelimit`` header
(``apply_async(time_limit=, soft_time_limit=)``, Celery's ``[hard, soft]``),
the task's options (``@app.task(time_limit=, soft_time_limit=)``), then the
worker's (``--time-limit``/``--soft-time-limit``, settings ``task_time_limit``/
``task_soft_time_limit``). How each pool enforces them is in the pool modules
and in docs/worker.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: Seconds a cancelled coroutine gets to finish its clean-up at the hard limit.
HARD_LIMIT_GRACE = 1.0


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


def consumer_timeout_from_management(
    queue: Mapping[str, Any] | None,
) -> float | None:
    """Seconds of the queue's own consumer timeout, from the management API's view of it.

    RabbitMQ 3.12 added a per-queue ``x-consumer-timeout`` argument and a
    ``consumer-timeout`` policy key (the lower wins); 3.10 and 3.11 only have the
    node-wide ``consumer_timeout``, which the management API does not show.
    """
    if not queue:
        return None
    found: list[float] = []
    arguments = queue.get("arguments") or {}
    policy = queue.get("effective_policy_definition") or {}
    for value in (arguments.get("x-consumer-timeout"), policy.get("consumer-timeout")):
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            found.append(value / 1000.0)
    return min(found) if found else None


def too_long_for_consumer_timeout(
    limits: Iterable[tuple[str, float | None]], consumer_timeout: float
) -> list[tuple[str, float]]:
    """``(task, hard limit)`` pairs whose limit is longer than ``consumer_timeout`` s.

    A delivery unacked for longer than the consumer timeout makes RabbitMQ close
    the worker's channel (every unacked message on it is redelivered), so such
    a limit would never be reached. ``consumer_timeout`` 0 means none.
    """
    if consumer_timeout <= 0:
        return []
    return [(name, hard) for name, hard in limits if hard is not None and hard > consumer_timeout]
