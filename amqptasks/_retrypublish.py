"""Publisher retries across connection loss (Celery's ``retry``/``retry_policy``), pure parts.

The sync and async publishing paths (``App._send``/``App._asend``) run the same
loop around :class:`PublishAttempts` and differ only in how they wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import (
    AmqptasksError,
    BrokerUnreachable,
    ConfigError,
    ConnectionLost,
    PublishNotConfirmed,
    Unroutable,
)
from amqptasks.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from amqptasks.config import Settings

log = get_logger(__name__)

_POLICY_KEYS = frozenset({"max_retries", "interval_start", "interval_step", "interval_max"})


@dataclass(frozen=True)
class PublishRetryPolicy:
    """How often, and after how long, a failed publish is tried again."""

    max_retries: int = 3
    interval_start: float = 0.0
    interval_step: float = 0.2
    interval_max: float = 0.2

    def intervals(self) -> Iterator[float]:
        """The wait before each retry."""
        for attempt in range(self.max_retries):
            yield min(self.interval_max, self.interval_start + attempt * self.interval_step)

    def attempts(self, task_id: str) -> PublishAttempts:
        """The retries of one publish (of the message ``task_id``) under this policy."""
        return PublishAttempts(self, task_id)

    @classmethod
    def resolve(
        cls, settings: Settings, retry: bool | None, policy: Mapping[str, Any] | None
    ) -> PublishRetryPolicy:
        """The call's policy: ``retry=False`` means none; ``policy`` overrides settings.

        Raises:
            ConfigError: unknown or negative policy values.
        """
        enabled = settings.publish_retry if retry is None else retry
        if not enabled:
            return _NO_RETRY
        if not policy:
            return _from_settings(settings)
        values: dict[str, Any] = {
            "max_retries": settings.publish_retry_max_retries,
            "interval_start": settings.publish_retry_interval_start,
            "interval_step": settings.publish_retry_interval_step,
            "interval_max": settings.publish_retry_interval_max,
        }
        if policy:
            unknown = set(policy) - _POLICY_KEYS
            if unknown:
                raise ConfigError(
                    f"unknown retry_policy key(s) {', '.join(sorted(unknown))}; "
                    f"known: {', '.join(sorted(_POLICY_KEYS))}"
                )
            values.update(policy)
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"retry_policy {key} must be a number >= 0, got {value!r}")
        return cls(
            max_retries=int(values["max_retries"]),
            interval_start=float(values["interval_start"]),
            interval_step=float(values["interval_step"]),
            interval_max=float(values["interval_max"]),
        )


_NO_RETRY = PublishRetryPolicy(max_retries=0)


def _from_settings(settings: Settings) -> PublishRetryPolicy:
    return PublishRetryPolicy(
        max_retries=settings.publish_retry_max_retries,
        interval_start=settings.publish_retry_interval_start,
        interval_step=settings.publish_retry_interval_step,
        interval_max=settings.publish_retry_interval_max,
    )


def is_retryable(exc: BaseException) -> bool:
    """Errors worth publishing again: the connection, not the message, was the problem."""
    if isinstance(exc, Unroutable):
        return False
    return isinstance(exc, ConnectionLost | BrokerUnreachable | PublishNotConfirmed)


class PublishAttempts:
    """The retries left to one publish; both producer twins drive it the same way.

    Example (the sync twin; the async one awaits ``asyncio.sleep``):
        >>> attempts = policy.attempts(call.message.message_id)
        >>> while True:
        ...     try:
        ...         client.publish(call)
        ...         break
        ...     except AmqptasksError as exc:
        ...         time.sleep(attempts.wait_or_raise(exc))
    """

    def __init__(self, policy: PublishRetryPolicy, task_id: str) -> None:
        self._waits = policy.intervals()
        self._task_id = task_id

    def wait_or_raise(self, exc: AmqptasksError) -> float:
        """Seconds to wait before publishing again after ``exc`` (the retry is logged).

        Raises:
            AmqptasksError: ``exc`` itself, when publishing again cannot help
                (see :func:`is_retryable`) or no retry is left.
        """
        if not is_retryable(exc):
            raise exc
        wait = next(self._waits, None)
        if wait is None:
            raise exc
        log.warning(
            "publish failed; retrying with the same task id",
            task_id=self._task_id,
            error=str(exc),
            retry_in=wait,
        )
        return wait
