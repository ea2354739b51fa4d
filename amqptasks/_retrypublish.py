"""Publisher retries across connection loss (Celery's ``retry``/``retry_policy``), pure parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import (
    BrokerUnreachable,
    ConfigError,
    ConnectionLost,
    PublishNotConfirmed,
    Unroutable,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from amqptasks.config import Settings

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
