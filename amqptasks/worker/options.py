"""A worker's options, resolved once: arguments (the CLI's included) over the app's settings."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from amqptasks.config import WORKER_POOLS
from amqptasks.exceptions import ConfigError
from amqptasks.policies.limits import TimeLimits, check_time_limits

if TYPE_CHECKING:
    from collections.abc import Sequence

    from amqptasks.config import Settings


def expand_hostname(template: str | None) -> str:
    """Expand ``%h`` (host), ``%n`` (host name part), ``%d`` (domain), ``%p`` (pid)."""
    host = socket.gethostname()
    short, _, domain = host.partition(".")
    text = template or "worker@%h"
    return (
        text.replace("%h", host)
        .replace("%n", short)
        .replace("%d", domain)
        .replace("%p", str(os.getpid()))
    )


def default_concurrency(pool: str) -> int:
    """Threads: twice the CPUs (I/O-bound); processes: the CPUs; asyncio: 100; solo: 1."""
    cpus = os.cpu_count() or 1
    return {"asyncio": 100, "processes": cpus, "solo": 1}.get(pool, max(2, 2 * cpus))


@dataclass(frozen=True)
class WorkerOptions:
    """Everything a worker runs with, each value decided once (see :meth:`resolve`)."""

    queues: tuple[str, ...]
    #: ``threads``, ``processes``, ``asyncio`` or ``solo``.
    pool_name: str
    concurrency: int
    prefetch_multiplier: int
    hostname: str
    shutdown_timeout: float
    #: The worker's default time limits for tasks that set none.
    time_limits: TimeLimits
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None
    app_path: str | None = None

    @property
    def prefetch_count(self) -> int:
        """Unacked deliveries this worker may hold, all queues together."""
        return self.concurrency * self.prefetch_multiplier

    @property
    def ack_hold_limit(self) -> int:
        """Settlements sent at once however busy the worker: half the prefetch budget."""
        return self.prefetch_count // 2

    @classmethod
    def resolve(
        cls,
        settings: Settings,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        pool: str | None = None,
        prefetch_multiplier: int | None = None,
        hostname: str | None = None,
        shutdown_timeout: float | None = None,
        app_path: str | None = None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
    ) -> WorkerOptions:
        """Arguments given (not None) win over ``settings``; checked together.

        Raises:
            ConfigError: an unknown pool, a concurrency the pool cannot have, or
                values out of range.
        """
        pool_name = pool or settings.worker_pool
        if pool_name not in WORKER_POOLS:
            raise ConfigError(f"pool must be one of {', '.join(WORKER_POOLS)}, got {pool_name!r}")
        asked = concurrency or settings.worker_concurrency
        if pool_name == "solo" and asked not in (None, 1):
            raise ConfigError(
                f"pool 'solo' runs one task at a time, but concurrency {asked} was asked "
                f"for: drop the concurrency or choose pool 'threads'"
            )
        resolved_concurrency = asked or default_concurrency(pool_name)
        if resolved_concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {resolved_concurrency}")
        multiplier = prefetch_multiplier or settings.worker_prefetch_multiplier
        if multiplier < 1:
            raise ConfigError(f"prefetch multiplier must be >= 1, got {multiplier}")
        hard = time_limit if time_limit is not None else settings.task_time_limit
        soft = soft_time_limit if soft_time_limit is not None else settings.task_soft_time_limit
        check_time_limits(soft, hard, "worker")
        return cls(
            queues=tuple(queues or [settings.default_queue]),
            pool_name=pool_name,
            concurrency=resolved_concurrency,
            prefetch_multiplier=multiplier,
            hostname=expand_hostname(hostname),
            shutdown_timeout=(
                shutdown_timeout
                if shutdown_timeout is not None
                else settings.worker_shutdown_timeout
            ),
            time_limits=TimeLimits(soft, hard),
            max_tasks_per_child=max_tasks_per_child or settings.worker_max_tasks_per_child,
            max_memory_per_child=max_memory_per_child or settings.worker_max_memory_per_child,
            app_path=app_path,
        )
