"""Worker settings: pool, concurrency, prefetch, shutdown, child processes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from amqptasks import constants
from amqptasks.config._group import SettingsGroup
from amqptasks.config._parse import check_optional_int, optional_int, parse_bool, str_tuple
from amqptasks.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: Values of ``worker_pool``.
WORKER_POOLS = ("threads", "processes", "asyncio", "solo")
#: The longest ``worker_dedupe_window`` (the claims stream keeps a day).
DAY = 86400


@dataclass(frozen=True)
class WorkerSettings(SettingsGroup):
    """How ``amqptasks worker`` runs (its command-line options override these)."""

    #: Classic queues: deliveries of a message (crashed workers) before it is dead-lettered.
    worker_max_deliveries: int = 5
    #: ``threads``, ``processes``, ``asyncio`` or ``solo`` (see docs/worker.md#pools).
    worker_pool: str = "threads"
    worker_concurrency: int | None = None
    #: Budget of unacked deliveries = concurrency x this, shared by all consumed queues.
    worker_prefetch_multiplier: int = constants.DEFAULT_PREFETCH_MULTIPLIER
    worker_shutdown_timeout: float = constants.DEFAULT_SHUTDOWN_TIMEOUT
    #: Worker processes started by ``amqptasks worker`` (``--workers``), each with its own
    #: connection, event loop and pool; above 1 the command supervises them.
    worker_processes: int = 1
    #: ``processes`` pool: replace a child after this many tasks (None: never).
    worker_max_tasks_per_child: int | None = None
    #: ``processes`` pool: replace a child whose resident memory passed this many KiB.
    worker_max_memory_per_child: int | None = None
    #: Worker extensions every worker of this app loads: ``module:attribute`` paths
    #: (environment: comma-separated), or in code the extensions or their classes.
    worker_extensions: tuple[Any, ...] = ()
    #: Send Celery's task and worker events (``-E``; Flower): docs/monitoring.md.
    worker_send_task_events: bool = False
    #: Answer ``celery inspect|control`` and follow revokes (``--control``).
    worker_enable_remote_control: bool = False
    #: Seconds a task id's first publish is remembered, so that a later publish of it (an
    #: outbox relay killed between confirm and delete) is skipped; 0 turns this off.
    #: At most a day (docs/django.md#outbox).
    worker_dedupe_window: float = 3600.0

    ENV_PARSERS: ClassVar[Mapping[str, Callable[[str], Any]]] = {
        "worker_max_deliveries": int,
        "worker_concurrency": optional_int,
        "worker_prefetch_multiplier": int,
        "worker_shutdown_timeout": float,
        "worker_processes": int,
        "worker_max_tasks_per_child": optional_int,
        "worker_max_memory_per_child": optional_int,
        "worker_extensions": str_tuple,
        "worker_send_task_events": parse_bool,
        "worker_enable_remote_control": parse_bool,
        "worker_dedupe_window": float,
    }

    def check(self) -> None:
        """A known pool; counts >= 1; a shutdown timeout > 0."""
        if self.worker_pool not in WORKER_POOLS:
            raise ConfigError(
                f"worker_pool must be one of {', '.join(WORKER_POOLS)}, got {self.worker_pool!r}"
            )
        if self.worker_max_deliveries < 1:
            raise ConfigError("worker_max_deliveries must be >= 1")
        if self.worker_prefetch_multiplier < 1:
            raise ConfigError("worker_prefetch_multiplier must be >= 1")
        if self.worker_concurrency is not None and self.worker_concurrency < 1:
            raise ConfigError("worker_concurrency must be >= 1")
        if (
            isinstance(self.worker_processes, bool)
            or not isinstance(self.worker_processes, int)
            or self.worker_processes < 1
        ):
            raise ConfigError(
                f"worker_processes must be an integer >= 1, got {self.worker_processes!r}"
            )
        for name in ("worker_max_tasks_per_child", "worker_max_memory_per_child"):
            check_optional_int(name, getattr(self, name))
        window = self.worker_dedupe_window
        number = isinstance(window, int | float) and not isinstance(window, bool)
        if not number or not 0 <= window <= DAY:
            raise ConfigError(
                f"worker_dedupe_window must be seconds from 0 to {DAY} (a day), got {window!r}"
            )
        value = self.worker_shutdown_timeout
        if not isinstance(value, int | float) or not value > 0 or math.isinf(value):
            raise ConfigError(f"worker_shutdown_timeout must be a number > 0, got {value!r}")
