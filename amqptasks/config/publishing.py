"""Publishing settings: confirms and the publisher's retries after a connection loss."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from amqptasks import constants
from amqptasks.config._group import SettingsGroup
from amqptasks.config._parse import check_number, parse_bool
from amqptasks.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


@dataclass(frozen=True)
class PublishSettings(SettingsGroup):
    """How producers publish (``apply_async(retry=, retry_policy=)`` override the retries)."""

    #: Seconds a publish waits for the broker's confirm.
    publish_timeout: float = constants.DEFAULT_PUBLISH_TIMEOUT
    #: Retry publishing after a connection loss (``apply_async(retry=)`` overrides).
    publish_retry: bool = True
    #: Times a failed publish is tried again before the error is raised.
    publish_retry_max_retries: int = 3
    #: Seconds before the first retry, added per retry, and the cap (as Celery's).
    publish_retry_interval_start: float = 0.0
    publish_retry_interval_step: float = 0.2
    publish_retry_interval_max: float = 0.2

    ENV_PARSERS: ClassVar[Mapping[str, Callable[[str], Any]]] = {
        "publish_timeout": float,
        "publish_retry": parse_bool,
        "publish_retry_max_retries": int,
        "publish_retry_interval_start": float,
        "publish_retry_interval_step": float,
        "publish_retry_interval_max": float,
    }

    def check(self) -> None:
        """Retry counts and intervals >= 0; a confirm timeout > 0."""
        for name in (
            "publish_retry_interval_start",
            "publish_retry_interval_step",
            "publish_retry_interval_max",
            "publish_retry_max_retries",
        ):
            check_number(name, getattr(self, name))
        value = self.publish_timeout
        if not isinstance(value, int | float) or not value > 0 or math.isinf(value):
            raise ConfigError(f"publish_timeout must be a number > 0, got {value!r}")
