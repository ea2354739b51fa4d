"""Execution pools without a broker: threads, processes and coroutines within time limits."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

from amqptasks import (
    ConfigError,
    SoftTimeLimitExceeded,
    Terminated,
    TimeLimitExceeded,
    WorkerLost,
    states,
)
from amqptasks.policies.limits import TimeLimits
from amqptasks.request import Request
from amqptasks.worker.execution import execute
from amqptasks.worker.pools import make_pool
from amqptasks.worker.pools.aio import run_async_task
from amqptasks.worker.pools.base import NotStarted, StartHook
from amqptasks.worker.pools.processes import ProcessPool
from amqptasks.worker.pools.threads import START_REPORT_DELAY, ThreadPool
from amqptasks.worker.timelimits import HARD_LIMIT_GRACE
from tests.unit import pool_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from amqptasks.task import Task
    from amqptasks.worker.outcome import Outcome
    from amqptasks.worker.pools.base import ExecutionPool

NONE = TimeLimits()


def _request(task: Task[Any, Any], *args: Any) -> Request:
    return Request(id=f"id-{task.name}", task=task.name, args=list(args))


# -- threads ----------------------------------------------------------------------------------


@pytest.fixture
async def threads() -> AsyncIterator[ThreadPool]:
    pool = ThreadPool(1)
    await pool.start()
    yield pool
    await pool.close()


async def test_thread_pool_runs_a_function_with_its_request(threads: ThreadPool) -> None:
    outcome = await threads.run(pool_app.echo, _request(pool_app.echo, 1), NONE)
    assert outcome.status == states.SUCCESS
    assert outcome.value["value"] == 1
    assert outcome.value["task_id"] == "id-" + pool_app.echo.name


async def test_thread_pool_reports_exceptions_and_survives_system_exit(threads: ThreadPool) -> None:
    failed = await threads.run(pool_app.fail, _request(pool_app.fail, "boom"), NONE)
    assert isinstance(failed.exception, ValueError) and "boom" in (failed.traceback or "")
    exited = await threads.run(pool_app.exit_task, _request(pool_app.exit_task), NONE)
    assert isinstance(exited.exception, SystemExit)
    again = await threads.run(pool_app.echo, _request(pool_app.echo, 2), NONE)
    assert again.value["value"] == 2


async def test_thread_soft_limit_is_raised_in_the_thread(threads: ThreadPool) -> None:
    outcome = await threads.run(pool_app.naps, _request(pool_app.naps, 10), TimeLimits(soft=0.1))
    assert outcome.value == "cleaned up"


async def test_thread_soft_limit_uncaught_fails_the_call(threads: ThreadPool) -> None:
    started = time.monotonic()
    outcome = await threads.run(pool_app.sleep, _request(pool_app.sleep, 0.3), TimeLimits(soft=0.1))
    # Raised only when the C call (time.sleep) returned: that is all CPython can do.
    assert isinstance(outcome.exception, SoftTimeLimitExceeded)
    assert time.monotonic() - started >= 0.3


async def test_thread_hard_limit_abandons_the_thread_and_replaces_it(threads: ThreadPool) -> None:
    started = time.monotonic()
    outcome = await threads.run(pool_app.sleep, _request(pool_app.sleep, 1.0), TimeLimits(hard=0.1))
    assert isinstance(outcome.exception, TimeLimitExceeded)
    assert "hard time limit of 0.1s" in str(outcome.exception)
    assert threads.abandoned == 1
    again = await threads.run(pool_app.echo, _request(pool_app.echo, 3), NONE)
    assert again.value["value"] == 3
    assert time.monotonic() - started < 0.9  # the abandoned thread still sleeps
    await asyncio.sleep(1.0)
    assert threads.abandoned == 0  # its sleep returned, the interruption ended it


async def test_a_limit_that_fires_as_the_call_ends_never_hits_the_next_call(
    threads: ThreadPool,
) -> None:
    for _ in range(30):
        outcome = await threads.run(
            pool_app.sleep, _request(pool_app.sleep, 0.01), TimeLimits(soft=0.01)
        )
        assert outcome.value == "slept" or isinstance(outcome.exception, SoftTimeLimitExceeded)
        follow = await threads.run(pool_app.echo, _request(pool_app.echo, 4), NONE)
        assert follow.value["value"] == 4


# -- coroutines -------------------------------------------------------------------------------


async def test_coroutine_without_limits() -> None:
    outcome = await run_async_task(pool_app.coro, _request(pool_app.coro, 0), NONE)
    assert outcome.value == "done"


async def test_coroutine_soft_limit_is_raised_at_its_await() -> None:
    seen: list[str] = []

    async def body() -> str:
        try:
            await asyncio.sleep(10)
        except SoftTimeLimitExceeded:
            seen.append("soft")
            await asyncio.sleep(0.01)  # clean-up may await
            if sys.version_info >= (3, 11):
                async with asyncio.timeout(0.01):  # the cancellation was taken back
                    await asyncio.sleep(0)
            return "cleaned up"
        return "slept"

    outcome = await run_async_task(_async_task(body), Request(id="x", task="t"), TimeLimits(0.05))
    assert (outcome.value, seen) == ("cleaned up", ["soft"])


async def test_coroutine_soft_limit_uncaught_fails_the_call() -> None:
    outcome = await run_async_task(pool_app.coro, _request(pool_app.coro, 10), TimeLimits(0.05))
    assert isinstance(outcome.exception, SoftTimeLimitExceeded)


async def test_coroutine_hard_limit_cancels_it() -> None:
    seen: list[str] = []

    async def body() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            seen.append("finally")

    outcome = await run_async_task(
        _async_task(body), Request(id="x", task="t"), TimeLimits(hard=0.05)
    )
    assert isinstance(outcome.exception, TimeLimitExceeded)
    assert seen == ["finally"]


async def test_coroutine_that_ignores_cancellation_is_abandoned() -> None:
    finished: list[str] = []

    async def body() -> str:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        await asyncio.sleep(HARD_LIMIT_GRACE + 0.3)  # past the grace the worker gives
        finished.append("stubborn")
        return "stubborn"

    started = time.monotonic()
    outcome = await run_async_task(
        _async_task(body), Request(id="x", task="t"), TimeLimits(hard=0.05)
    )
    assert isinstance(outcome.exception, TimeLimitExceeded)
    assert HARD_LIMIT_GRACE <= time.monotonic() - started < HARD_LIMIT_GRACE + 0.3
    assert finished == []  # abandoned, still running
    await asyncio.sleep(0.5)
    assert finished == ["stubborn"]


def _async_task(body: Any) -> Any:
    class _Task:
        name = "t"
        is_async = True

        def __call__(self) -> Any:
            return body()

    return _Task()


# -- processes --------------------------------------------------------------------------------

APP_PATH = "tests.unit.pool_app:app"


@pytest.fixture
async def processes() -> AsyncIterator[ProcessPool]:
    pool = ProcessPool(1, app_path=APP_PATH, max_tasks_per_child=3)
    await pool.start()
    yield pool
    await pool.close()


async def test_process_pool_runs_calls_in_a_child(processes: ProcessPool) -> None:
    import os

    outcome = await processes.run(pool_app.echo, _request(pool_app.echo, [1, "a"]), NONE)
    assert outcome.value["value"] == [1, "a"]
    assert outcome.value["pid"] != os.getpid()
    assert outcome.value["pid"] in processes.pids


async def test_process_pool_rebuilds_exceptions(processes: ProcessPool) -> None:
    failed = await processes.run(pool_app.fail, _request(pool_app.fail, "boom"), NONE)
    assert isinstance(failed.exception, ValueError) and "boom" in (failed.traceback or "")
    odd = await processes.run(pool_app.fail_unpicklable, _request(pool_app.fail_unpicklable), NONE)
    assert type(odd.exception) is pool_app.Unpicklable
    assert str(odd.exception) == "7: odd"
    result = await processes.run(
        pool_app.unpicklable_result, _request(pool_app.unpicklable_result), NONE
    )
    assert isinstance(result.exception, TypeError)


async def test_process_soft_limit_interrupts_even_a_sleep(processes: ProcessPool) -> None:
    outcome = await processes.run(pool_app.naps, _request(pool_app.naps, 10), TimeLimits(soft=0.2))
    assert outcome.value == "cleaned up"
    uncaught = await processes.run(
        pool_app.sleep, _request(pool_app.sleep, 10), TimeLimits(soft=0.2)
    )
    assert isinstance(uncaught.exception, SoftTimeLimitExceeded)


async def test_process_hard_limit_kills_and_replaces_the_child(processes: ProcessPool) -> None:
    (before,) = processes.pids
    outcome = await processes.run(
        pool_app.sleep, _request(pool_app.sleep, 10), TimeLimits(hard=0.3)
    )
    assert isinstance(outcome.exception, TimeLimitExceeded)
    after = await processes.run(pool_app.echo, _request(pool_app.echo, 0), NONE)
    assert after.value["pid"] != before


async def test_a_child_that_dies_is_reported_lost_and_replaced(processes: ProcessPool) -> None:
    outcome = await processes.run(pool_app.die, _request(pool_app.die), NONE)
    assert isinstance(outcome.exception, WorkerLost)
    assert "SIGKILL" in str(outcome.exception)
    after = await processes.run(pool_app.echo, _request(pool_app.echo, 0), NONE)
    assert after.status == states.SUCCESS


async def test_a_terminated_call_ends_as_terminated_not_lost(processes: ProcessPool) -> None:
    request = _request(pool_app.sleep, 10)
    running = asyncio.ensure_future(processes.run(pool_app.sleep, request, NONE))
    for _ in range(200):
        if processes.terminate(request.id, int(signal.SIGTERM)):
            break
        await asyncio.sleep(0.01)
    outcome = await asyncio.wait_for(running, 10)
    assert isinstance(outcome.exception, Terminated)
    assert outcome.exception.signum == int(signal.SIGTERM)  # asked for; SIGKILL was sent
    assert not processes.terminate(request.id, int(signal.SIGTERM))  # nothing runs it now
    # The next call on the replacement child is not taken for a terminated one.
    died = await processes.run(pool_app.die, _request(pool_app.die), NONE)
    assert isinstance(died.exception, WorkerLost)


async def test_max_tasks_per_child(processes: ProcessPool) -> None:
    pids = [
        (await processes.run(pool_app.echo, _request(pool_app.echo, i), NONE)).value["pid"]
        for i in range(6)
    ]
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4] == pids[5]


async def test_a_child_that_cannot_import_the_app_fails_the_start() -> None:
    pool = ProcessPool(1, app_path="tests.unit.no_such_module:app")
    with pytest.raises(ConfigError, match="could not load the app"):
        await pool.start()
    await pool.close()


async def test_thread_pool_queues_calls_beyond_its_threads_and_runs_them_in_order() -> None:
    pool = ThreadPool(1, queues_ahead=True)
    await pool.start()
    try:
        calls = [
            asyncio.ensure_future(pool.run(pool_app.naps, _request(pool_app.naps, 0.05), NONE))
            for _ in range(3)
        ]
        await asyncio.sleep(0.02)
        assert pool.queued == 2  # one runs, two wait for the one thread
        outcomes = await asyncio.gather(*calls)
        assert [o.status for o in outcomes] == [states.SUCCESS] * 3
        assert pool.queued == 0
    finally:
        await pool.close()


async def test_withdrawn_calls_end_not_started_and_the_running_one_finishes() -> None:
    pool = ThreadPool(1, queues_ahead=True)
    await pool.start()
    try:
        running = asyncio.ensure_future(pool.run(pool_app.naps, _request(pool_app.naps, 0.2), NONE))
        await asyncio.sleep(0.05)
        queued = [
            asyncio.ensure_future(pool.run(pool_app.echo, _request(pool_app.echo, i), NONE))
            for i in range(2)
        ]
        await asyncio.sleep(0.01)
        assert pool.withdraw_queued() == 2
        for call in queued:
            outcome = await call
            assert isinstance(outcome.exception, NotStarted)
        assert (await running).status == states.SUCCESS
        assert pool.withdraw_queued() == 0
    finally:
        await pool.close()


async def test_on_start_runs_on_the_loop_before_the_body(threads: ThreadPool) -> None:
    seen: list[tuple[str, bool]] = []
    loop_thread = threading.get_ident()

    def on_start() -> None:
        seen.append(("on_start", threading.get_ident() == loop_thread))

    outcome = await threads.run(pool_app.naps, _request(pool_app.naps, 0.01), NONE, on_start)
    assert outcome.status == states.SUCCESS
    assert seen == [("on_start", True)]
    # A call withdrawn before it started never calls it.
    blocker = asyncio.ensure_future(threads.run(pool_app.naps, _request(pool_app.naps, 0.1), NONE))
    await asyncio.sleep(0.02)
    withdrawn = asyncio.ensure_future(
        threads.run(pool_app.echo, _request(pool_app.echo, 1), NONE, on_start)
    )
    await asyncio.sleep(0.01)
    threads.withdraw_queued()
    assert isinstance((await withdrawn).exception, NotStarted)
    await blocker
    assert seen == [("on_start", True)]


async def _seen_while_running(
    threads: ThreadPool, hook: StartHook, seen: list[Any], *, nap: float
) -> asyncio.Future[Outcome]:
    """Start a call that naps ``nap`` s; wait until ``hook`` recorded its start in
    ``seen``, which it does once, as the call starts, not as it ends."""
    running = asyncio.ensure_future(
        threads.run(pool_app.naps, _request(pool_app.naps, nap), NONE, hook)
    )
    deadline = time.monotonic() + nap * 0.8
    while not seen and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    assert not running.done()
    assert len(seen) == 1
    return running


async def test_a_start_that_does_not_hold_the_body_is_reported_with_its_own_time(
    threads: ThreadPool,
) -> None:
    loop_thread = threading.get_ident()
    seen: list[tuple[float, float, bool]] = []

    def record(started_at: float) -> None:
        seen.append((started_at, time.time(), threading.get_ident() == loop_thread))

    hook = StartHook(record, holds_body=False)
    # A long call: its start is reported on the loop while it still runs, without
    # waiting for its end, dated when the thread took it up.
    before = time.time()
    running = await _seen_while_running(threads, hook, seen, nap=1.0)
    started_at, reported_at, on_loop = seen[0]
    assert on_loop
    assert before <= started_at <= reported_at
    assert reported_at - started_at < START_REPORT_DELAY + 0.1
    assert (await running).status == states.SUCCESS
    # Quick calls: each start is reported before its outcome comes back.
    for i in range(20):
        seen.clear()
        outcome = await threads.run(pool_app.echo, _request(pool_app.echo, i), NONE, hook)
        assert outcome.status == states.SUCCESS
        assert len(seen) == 1


async def test_a_start_safe_in_any_thread_runs_in_the_pool_thread_as_the_call_starts(
    threads: ThreadPool,
) -> None:
    loop_thread = threading.get_ident()
    seen: list[tuple[float, bool]] = []

    def record(started_at: float) -> None:
        seen.append((started_at, threading.get_ident() != loop_thread))

    hook = StartHook(record, holds_body=False, in_any_thread=True)
    before = time.time()
    running = await _seen_while_running(threads, hook, seen, nap=0.5)
    started_at, in_pool_thread = seen[0]
    assert in_pool_thread
    assert before <= started_at <= time.time()
    assert (await running).status == states.SUCCESS
    assert len(seen) == 1
    # With time limits, whose timers the loop starts, it still runs once, in the thread.
    seen.clear()
    limited = TimeLimits(soft=5.0, hard=10.0)
    outcome = await threads.run(pool_app.echo, _request(pool_app.echo, 1), limited, hook)
    assert outcome.status == states.SUCCESS
    assert len(seen) == 1 and seen[0][1]


async def test_each_pool_writes_when_a_call_starts_before_its_body_and_hooks_run(
    threads: ThreadPool, processes: ProcessPool
) -> None:
    async def started_and_seen(pool: ExecutionPool) -> tuple[Outcome, float, list[Any]]:
        record = SimpleNamespace(started_at=None)
        seen: list[float | None] = []
        outcome = await pool.run(
            pool_app.now,
            _request(pool_app.now),
            NONE,
            lambda: seen.append(record.started_at),
            record,
        )
        return outcome, record.started_at, seen

    for pool in (threads, processes):
        before = time.time()
        outcome, started_at, seen = await started_and_seen(pool)
        assert outcome.status == states.SUCCESS, pool
        assert before <= started_at <= outcome.value <= time.time(), pool
        assert seen == [started_at], pool
    # async def tasks run on the loop, whatever the pool
    record = SimpleNamespace(started_at=None)
    before = time.time()
    outcome = await execute(
        pool_app.coro, _request(pool_app.coro, 0.01), threads, NONE, None, record
    )
    assert outcome.value == "done"
    assert before <= record.started_at <= time.time()


# -- choosing a pool --------------------------------------------------------------------------


def test_make_pool_sizes() -> None:
    app = pool_app.app
    assert make_pool("threads", 5, app=app).describe() == "threads (5 threads)"
    assert make_pool("solo", 1, app=app).describe() == "solo (1 thread)"
    assert make_pool("asyncio", 100, app=app).describe() == "asyncio (8 threads)"
    # threads and solo queue calls beyond their threads; asyncio's threads do not
    assert [make_pool(name, 2, app=app).queues_ahead for name in ("threads", "solo")] == [
        True,
        True,
    ]
    assert not make_pool("asyncio", 2, app=app).queues_ahead
    processes = make_pool("processes", 2, app=app, max_tasks_per_child=10)
    assert isinstance(processes, ProcessPool)
    assert processes.app_path == APP_PATH  # found among the imported modules
    with pytest.raises(ConfigError):
        make_pool("gevent", 1, app=app)
