"""Worker options checked before anything connects (issue #5)."""

from __future__ import annotations

import os

import pytest

from amqptasks import App, ConfigError, Worker
from amqptasks.policies.limits import TimeLimits
from amqptasks.worker.options import default_concurrency
from amqptasks.worker.pools.processes import ProcessPool
from amqptasks.worker.pools.threads import ThreadPool
from tests.unit import pool_app


def test_default_concurrency_per_pool() -> None:
    cpus = os.cpu_count() or 1
    assert default_concurrency("threads") == max(2, 2 * cpus)
    assert default_concurrency("processes") == cpus
    assert default_concurrency("asyncio") == 100
    assert default_concurrency("solo") == 1


def test_solo_is_one_task_in_one_thread() -> None:
    worker = Worker(pool_app.app, pool="solo")
    assert worker.concurrency == 1
    assert isinstance(worker.pool, ThreadPool)
    assert worker.pool.size == 1


def test_solo_refuses_more_concurrency_naming_both() -> None:
    with pytest.raises(ConfigError, match=r"pool 'solo'.*concurrency 4"):
        Worker(pool_app.app, pool="solo", concurrency=4)


def test_processes_pool_takes_its_options_from_the_worker_or_the_settings() -> None:
    app = App("t", worker_max_tasks_per_child=50, worker_max_memory_per_child=100_000)
    worker = Worker(app, pool="processes", concurrency=3, app_path="tests.unit.pool_app:app")
    pool = worker.pool
    assert isinstance(pool, ProcessPool)
    assert (pool.size, pool.max_tasks_per_child, pool.max_memory_per_child) == (3, 50, 100_000)
    override = Worker(
        app, pool="processes", app_path="tests.unit.pool_app:app", max_tasks_per_child=2
    )
    assert isinstance(override.pool, ProcessPool)
    assert override.pool.max_tasks_per_child == 2


def test_processes_pool_needs_an_importable_app() -> None:
    local = App("not-importable")
    with pytest.raises(ConfigError, match="import path"):
        Worker(local, pool="processes")


def test_prefetch_budget_is_concurrency_times_multiplier() -> None:
    worker = Worker(pool_app.app, concurrency=3, prefetch_multiplier=2, queues=["a", "b"])
    assert worker.prefetch_count == 6


def test_worker_time_limits_come_from_options_then_settings() -> None:
    app = App("t", task_time_limit=60, task_soft_time_limit=50)
    assert Worker(app).options.time_limits == TimeLimits(50, 60)
    assert Worker(app, time_limit=120, soft_time_limit=100).options.time_limits == TimeLimits(
        100, 120
    )
    with pytest.raises(ConfigError, match="worker: soft_time_limit"):
        Worker(app, soft_time_limit=90)  # not below the hard limit of 60


def test_unknown_pool_is_refused() -> None:
    with pytest.raises(ConfigError, match="pool must be one of"):
        Worker(pool_app.app, pool="gevent")
