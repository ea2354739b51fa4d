"""Rate limits: ``"10/s"``, ``"100/m"``, ``"1000/h"`` per task, per worker.

A rate-limited delivery waits on the event loop for its turn while it holds its
prefetch slot (it is delivered and unacked): the worker never fetches more
messages than its prefetch window to make up for waiting ones, and never
republishes or requeues a message for rate limiting. The turn is computed, not
polled: :class:`TokenBucket` hands out reservations in arrival order (the
generic cell rate algorithm, GCRA), so N waiting deliveries cost N timers.
The limit's syntax is read by :func:`amqptasks.policies.limits.parse_rate_limit`.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from amqptasks.exceptions import ConfigError
from amqptasks.policies.limits import parse_rate_limit

if TYPE_CHECKING:
    from collections.abc import Callable


class TokenBucket:
    """A token bucket that hands out reservations in order (GCRA; no I/O).

    Args:
        rate: Tokens added per second.
        capacity: Tokens the bucket holds when full (the burst); it starts full.
        clock: Monotonic clock, for tests.

    Example:
        >>> bucket = TokenBucket(5.0)
        >>> bucket.reserve()  # the first token is there
        0.0
    """

    __slots__ = ("_clock", "_tat", "capacity", "interval", "rate")

    def __init__(
        self, rate: float, capacity: int = 1, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ConfigError(f"a token bucket needs a finite rate > 0, got {rate!r}")
        if capacity < 1:
            raise ConfigError(f"a token bucket needs a capacity >= 1, got {capacity!r}")
        self.rate = rate
        self.capacity = capacity
        self.interval = 1.0 / rate
        self._clock = clock
        #: Theoretical arrival time of the next token, were the bucket drained.
        self._tat = -math.inf

    def reserve(self) -> float:
        """Take the next token; return how many seconds to wait before using it."""
        now = self._clock()
        start = max(self._tat, now)
        self._tat = start + self.interval
        # With a full bucket, `capacity` tokens may be taken back to back.
        return max(0.0, self._tat - now - self.capacity * self.interval)

    def cancel(self, delay: float) -> None:
        """Give back a reservation that will not be used (its wait was cut short).

        Only the latest reservation can be given back exactly; an older one
        stays taken, which errs on the slow side.
        """
        if delay > 0:
            self._tat -= self.interval


class RateLimiter:
    """One :class:`TokenBucket` per rate-limited task name (made on first use)."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket | None] = {}

    def reserve(self, name: str, rate_limit: str | float | None) -> float:
        """Seconds the next call of task ``name`` waits (0 if it is not limited)."""
        try:
            bucket = self._buckets[name]
        except KeyError:
            rate = parse_rate_limit(rate_limit)
            bucket = self._buckets[name] = TokenBucket(rate) if rate else None
        return bucket.reserve() if bucket is not None else 0.0

    def cancel(self, name: str, delay: float) -> None:
        """Give back the reservation that made task ``name`` wait ``delay`` s."""
        bucket = self._buckets.get(name)
        if bucket is not None:
            bucket.cancel(delay)

    def forget(self, name: str) -> None:
        """Drop task ``name``'s bucket: its next call reads the task's ``rate_limit`` again
        (``celery control rate_limit`` changed it)."""
        self._buckets.pop(name, None)
