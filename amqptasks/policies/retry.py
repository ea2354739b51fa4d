"""Retry policy: what happens after a task raised (pure; no I/O).

A task's :class:`RetryPolicy` (``Task.failure_policy``) is not the publisher's
retries (``apply_async(retry_policy=)``, :mod:`amqptasks._retrypublish`): this one
re-runs the task after it failed. The worker turns a :class:`Decision` into
broker actions: a retry is republished through the delay levels (and
confirmed) before the original message is acked; a dead-letter goes to the
queue's DLQ with the reason.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from amqptasks import constants
from amqptasks.exceptions import ConfigError, Reject, Retry, TimeLimitExceeded

if TYPE_CHECKING:
    from collections.abc import Callable

#: What follows a failed attempt: another attempt, the dead-letter queue, or a FAILURE only.
FailureAction = Literal["retry", "dead-letter", "fail"]


@dataclass(frozen=True)
class Decision:
    """The outcome of a failure: retry after ``countdown`` s, or stop (with a reason)."""

    action: FailureAction
    countdown: float = 0.0
    reason: str = ""
    #: The exception to report (the cause, for a ``Retry`` that carries one).
    exception: BaseException | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """A task's retry settings, as Celery names them.

    Args:
        max_retries: Retries allowed (None: no limit).
        autoretry_for: Exception types retried automatically.
        dont_autoretry_for: Exception types never retried (wins over ``autoretry_for``).
        retry_backoff: False (fixed ``default_retry_delay``), True (1, 2, 4, ... s) or
            a number (that factor: ``factor * 2**retries`` s).
        retry_backoff_max: Cap of the backoff, in seconds.
        retry_jitter: Pick the delay at random between 0 and the backoff ("full jitter"),
            so that failing tasks do not retry in lockstep.
        default_retry_delay: Seconds between retries without backoff.
        dead_letter_failures: Send a failure that is not retried to the DLQ.
    """

    max_retries: int | None = 3
    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True
    default_retry_delay: float = 180.0
    dead_letter_failures: bool = True

    def __post_init__(self) -> None:
        for name in ("autoretry_for", "dont_autoretry_for"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in value
            ):
                raise ConfigError(f"{name} must be a tuple of exception types, got {value!r}")
        if self.max_retries is not None and self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0 or None, got {self.max_retries!r}")
        if self.retry_backoff_max < 0 or self.default_retry_delay < 0:
            raise ConfigError("retry_backoff_max and default_retry_delay must be >= 0")

    def next_delay(self, retries: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds before retry number ``retries + 1``."""
        if not self.retry_backoff:
            return self.default_retry_delay
        factor = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
        # 2**1024 overflows a float; far below that the cap has long been reached.
        countdown: float = min(self.retry_backoff_max, factor * 2.0 ** min(retries, 60))
        if self.retry_jitter:
            countdown = rng() * countdown
        return max(0.0, countdown)

    def decide(
        self, exc: BaseException, retries: int, rng: Callable[[], float] = random.random
    ) -> Decision:
        """What to do after attempt ``retries + 1`` raised ``exc``."""
        if isinstance(exc, Reject):
            return Decision("dead-letter", reason=constants.REASON_REJECTED, exception=exc)
        if isinstance(exc, Retry):
            limit = exc.max_retries if exc.max_retries is not None else self.max_retries
            cause = exc.exc or exc
            if limit is not None and retries >= limit:
                return Decision("dead-letter", reason=constants.REASON_MAX_RETRIES, exception=cause)
            countdown = (
                exc.countdown if exc.countdown is not None else self.next_delay(retries, rng)
            )
            return Decision("retry", countdown=countdown, exception=cause)
        wanted = isinstance(exc, self.autoretry_for) and not isinstance(
            exc, self.dont_autoretry_for
        )
        if wanted:
            if self.max_retries is not None and retries >= self.max_retries:
                return Decision("dead-letter", reason=constants.REASON_MAX_RETRIES, exception=exc)
            return Decision("retry", countdown=self.next_delay(retries, rng), exception=exc)
        if self.dead_letter_failures:
            reason = (
                constants.REASON_TIME_LIMIT
                if isinstance(exc, TimeLimitExceeded)
                else constants.REASON_FAILED
            )
            return Decision("dead-letter", reason=reason, exception=exc)
        return Decision("fail", exception=exc)
