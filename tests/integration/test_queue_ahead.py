"""Workers of an app of plain functions: the pool queues calls ahead of its threads.

The ``threads`` and ``solo`` pools take every call at once and queue those no thread
is free for (``ExecutionPool.queues_ahead``). What a user checks: each call runs once,
never more at once than ``-c``; a warm shutdown gives the queued calls back
unstarted; the STARTED state, ``task_prerun`` and time limits belong to the moment a
call starts, not to when it was queued.
"""

from __future__ import annotations

import importlib
import signal
from typing import TYPE_CHECKING, Any

import pytest

from amqptasks import RemoteTaskError
from tests.integration.conftest import dlq_headers, lines, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.integration.conftest import WorkerProcess

PLAIN_APP = "tests.integration.apps.plain:app"


@pytest.fixture(scope="module")
def plain(broker_env: str, broker_url: str) -> Iterator[Any]:
    """The ``tests.integration.apps.plain`` module, its app pointed at the session broker."""
    module = importlib.import_module("tests.integration.apps.plain")
    assert module.app.settings.broker_url == broker_url
    yield module
    module.app.close()


def _peak(ledger: Path) -> int:
    """Most ``slow`` calls running at once, from their start/done lines."""
    running = peak = 0
    for line in lines(ledger):
        if line.startswith("start "):
            running += 1
            peak = max(peak, running)
        elif line.startswith("done "):
            running -= 1
    return peak


@pytest.mark.parametrize(("pool", "concurrency"), [("threads", 3), ("solo", 1)])
def test_calls_queued_in_the_pool_run_once_each_and_never_more_than_the_concurrency(
    plain: Any,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    tmp_path: Path,
    rabbit: Any,
    pool: str,
    concurrency: int,
) -> None:
    ledger = tmp_path / "ledger"
    start_worker("-Q", queue_name, "-P", pool, "-c", str(concurrency), app=PLAIN_APP)
    spans = [
        plain.slow.apply_async((str(ledger), f"s{i}", 0.03), queue=queue_name) for i in range(24)
    ]
    records = [
        plain.record.apply_async((str(ledger), f"r{i}"), queue=queue_name) for i in range(60)
    ]
    failed = [plain.fail.apply_async((f"no {i}",), queue=queue_name) for i in range(4)]

    assert [r.get(timeout=60) for r in spans] == [f"s{i}" for i in range(24)]
    assert [r.get(timeout=60) for r in records] == [f"r{i}" for i in range(60)]
    for result in failed:
        with pytest.raises((ValueError, RemoteTaskError)):
            result.get(timeout=30)
    wait_for(lambda: rabbit.queue_depths().get(queue_name) == (0, 0), what="nothing left unacked")
    recorded = [line for line in lines(ledger) if line.startswith("r")]
    assert sorted(recorded) == sorted(f"r{i}" for i in range(60))  # each exactly once
    assert _peak(ledger) == concurrency  # all the threads were used, never more
    dead = sorted(h["id"] for h in dlq_headers(rabbit.amqp_url, f"{queue_name}.dlq"))
    assert dead == sorted(r.id for r in failed)


def _held_worker(
    plain: Any,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    tmp_path: Path,
    env: dict[str, str] | None = None,
) -> tuple[WorkerProcess, Any, Path, Path]:
    """A ``-P threads -c 1`` worker whose one thread runs call A until ``flag`` is deleted.

    Returns the worker, A's result, the ledger and the flag.
    """
    ledger, flag = tmp_path / "ledger", tmp_path / "flag"
    flag.touch()
    worker = start_worker("-Q", queue_name, "-P", "threads", "-c", "1", app=PLAIN_APP, env=env)
    blocker = plain.wait_for_flag.apply_async((str(flag), str(ledger), "A"), queue=queue_name)
    wait_for(lambda: "start A" in lines(ledger), what="A running")
    return worker, blocker, ledger, flag


def test_warm_shutdown_gives_the_calls_queued_in_the_pool_back_unstarted(
    plain: Any,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    tmp_path: Path,
    rabbit: Any,
) -> None:
    worker, blocker, ledger, flag = _held_worker(plain, start_worker, queue_name, tmp_path)
    queued = [plain.record.apply_async((str(ledger), token), queue=queue_name) for token in "BCD"]
    # prefetch 4: A runs, B, C and D wait in the pool's queue.
    wait_for(lambda: rabbit.queue_depths()[queue_name] == (0, 4), what="B, C, D prefetched")

    worker.signal(signal.SIGTERM)
    wait_for(lambda: "warm shutdown" in worker.log(), what="the warm shutdown")
    assert "not_started=3" in worker.log()
    flag.unlink()
    assert worker.wait(30) == 0
    assert blocker.get(timeout=10) == "A"
    assert lines(ledger) == ["start A"]  # B, C and D never started...
    assert rabbit.queue_depths()[queue_name] == (3, 0)  # ...and are back in the queue
    start_worker("-Q", queue_name, "-P", "threads", "-c", "1", app=PLAIN_APP)
    assert [r.get(timeout=30) for r in queued] == ["B", "C", "D"]


def test_a_queued_call_is_started_when_a_thread_takes_it(
    plain: Any,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    tmp_path: Path,
    rabbit: Any,
) -> None:
    hooks = tmp_path / "hooks"
    env = {"AMQPTASKS_TASK_TRACK_STARTED": "1", "AMQPTASKS_TEST_HOOK_LOG": str(hooks)}
    _, blocker, ledger, flag = _held_worker(plain, start_worker, queue_name, tmp_path, env)
    queued = plain.record.apply_async((str(ledger), "B"), queue=queue_name)
    wait_for(lambda: rabbit.queue_depths()[queue_name] == (0, 2), what="B delivered")
    wait_for(lambda: blocker.state == "STARTED", what="A reported STARTED")

    assert queued.state == "PENDING"  # delivered and queued in the pool, not started
    assert lines(hooks) == [f"task_prerun {blocker.id}"]
    flag.unlink()
    assert queued.get(timeout=20) == "B"
    assert lines(hooks) == [f"task_prerun {blocker.id}", f"task_prerun {queued.id}"]


def test_time_limits_of_a_queued_call_count_from_its_start(
    plain: Any,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger"
    start_worker("-Q", queue_name, "-P", "threads", "-c", "1", app=PLAIN_APP)
    first = plain.slow.apply_async((str(ledger), "first", 1.0), queue=queue_name)
    limited = plain.soft_limited.apply_async((str(ledger), 3.0), queue=queue_name)
    assert first.get(timeout=20) == "first"
    # It waited a second in the pool's queue: a 0.5 s soft limit counted from then
    # would have passed before it ran, and it would nap its 3 s uninterrupted.
    assert limited.get(timeout=20) == "cleaned up"
    assert lines(ledger)[-1] == "soft limit"
