"""Time limits in the worker: whether the broker would cut them short (pure).

Which limits apply to a call is worked out by
:func:`amqptasks.policies.limits.resolve_time_limits`. How each pool enforces
them is in the pool modules and in docs/worker.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: Seconds a cancelled coroutine gets to finish its clean-up at the hard limit.
HARD_LIMIT_GRACE = 1.0


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
