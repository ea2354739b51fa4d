"""Task settings: the defaults of every task (results, acks, retries, time limits)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from amqptasks.config._group import SettingsGroup
from amqptasks.config._parse import check_number, optional_float, optional_int, parse_bool
from amqptasks.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


@dataclass(frozen=True)
class TaskSettings(SettingsGroup):
    """Defaults of every task; ``@app.task(...)`` and ``apply_async(...)`` override them."""

    task_ignore_result: bool = False
    task_acks_early: bool = False
    task_track_started: bool = False
    #: Retries of a task that asks for them (``max_retries`` task option overrides).
    task_max_retries: int | None = 3
    #: Seconds before a retry when neither ``countdown`` nor backoff says.
    task_default_retry_delay: float = 180.0
    #: Dead-letter a task that failed without (further) retries, besides reporting FAILURE.
    task_dead_letter_failures: bool = True
    #: Default hard time limit of every task, in seconds (None: none).
    task_time_limit: float | None = None
    #: Default soft time limit of every task, in seconds (None: none).
    task_soft_time_limit: float | None = None

    ENV_PARSERS: ClassVar[Mapping[str, Callable[[str], Any]]] = {
        "task_ignore_result": parse_bool,
        "task_acks_early": parse_bool,
        "task_track_started": parse_bool,
        "task_max_retries": optional_int,
        "task_default_retry_delay": float,
        "task_dead_letter_failures": parse_bool,
        "task_time_limit": optional_float,
        "task_soft_time_limit": optional_float,
    }

    def check(self) -> None:
        """Retries and delays >= 0; time limits > 0 (or None)."""
        check_number("task_default_retry_delay", self.task_default_retry_delay)
        if self.task_max_retries is not None and self.task_max_retries < 0:
            raise ConfigError("task_max_retries must be >= 0 (or None for no limit)")
        for name in ("task_time_limit", "task_soft_time_limit"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not value > 0
                or math.isinf(value)
            ):
                raise ConfigError(
                    f"{name} must be a number of seconds > 0 (or None), got {value!r}"
                )
