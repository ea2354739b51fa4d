"""Pools (threads, processes, asyncio, solo) on a real node: where tasks run, lost children."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

import pytest

from amqptasks import constants
from tests.integration.conftest import dlq_headers, lines, wait_for

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize("pool", ["threads", "processes", "asyncio", "solo"])
def test_each_pool_runs_sync_and_async_tasks(
    core: Any, start_worker: Any, queue_name: str, pool: str, tmp_path: Path
) -> None:
    concurrency = [] if pool == "solo" else ["-c", "2"]
    worker = start_worker("-Q", queue_name, "-P", pool, *concurrency)
    assert core.add.apply_async((2, 3), queue=queue_name).get(timeout=30) == 5
    assert core.async_add.apply_async((2, 3), queue=queue_name).get(timeout=30) == 5
    sync_pid = core.getpid.apply_async(queue=queue_name).get(timeout=30)
    async_pid = core.async_getpid.apply_async(queue=queue_name).get(timeout=30)
    assert async_pid == worker.proc.pid  # async def tasks always run on the worker's loop
    if pool == "processes":
        assert sync_pid != worker.proc.pid  # a child process
    else:
        assert sync_pid == worker.proc.pid  # a thread of the worker
    results = [core.add.apply_async((i, i), queue=queue_name) for i in range(20)]
    assert [r.get(timeout=30) for r in results] == [2 * i for i in range(20)]
    # A task that sends a task (from a thread, or a child with its own connection).
    ledger = tmp_path / "ledger"
    core.spawn_record.apply_async((str(ledger), queue_name), queue=queue_name).get(timeout=30)
    wait_for(lambda: lines(ledger) == ["nested"], what="the nested task to run")


def test_solo_runs_one_task_at_a_time(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    start_worker("-Q", queue_name, "-P", "solo")
    results = [
        core.slow.apply_async((str(ledger), f"t{i}", 0.3), queue=queue_name) for i in range(3)
    ]
    assert [r.get(timeout=30) for r in results] == ["t0", "t1", "t2"]
    assert lines(ledger) == [f"{step} t{i}" for i in range(3) for step in ("start", "done")]


def test_processes_child_killed_mid_task_is_replaced_and_the_task_runs_again(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path, rabbit: Any
) -> None:
    ledger = tmp_path / "ledger"
    worker = start_worker("-Q", queue_name, "-P", "processes", "-c", "1")
    result = core.slow_pid.apply_async((str(ledger), "k1", 2.0), queue=queue_name)
    wait_for(lambda: lines(ledger), what="the task to start")
    victim = int(lines(ledger)[0].split()[-1])
    assert victim != worker.proc.pid
    os.kill(victim, signal.SIGKILL)  # as the OOM killer would
    assert result.get(timeout=30) == "k1"  # redelivered (not acked) and run again
    started = [line for line in lines(ledger) if line.startswith("start")]
    assert len(started) == 2
    assert int(started[1].split()[-1]) not in (victim, worker.proc.pid)  # a replacement child
    assert "a pool process died while running a task" in worker.log()
    assert worker.proc.poll() is None
    assert rabbit.queue_depths()[queue_name] == (0, 0)


def test_processes_task_that_keeps_killing_its_child_ends_in_the_dlq(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path, rabbit: Any, broker_url: str
) -> None:
    ledger = tmp_path / "ledger"
    worker = start_worker(
        "-Q",
        queue_name,
        "-P",
        "processes",
        "-c",
        "1",
        env={"AMQPTASKS_WORKER_MAX_DELIVERIES": "2"},
    )
    core.die.apply_async((str(ledger),), queue=queue_name)
    dlq = f"{queue_name}.dlq"
    wait_for(lambda: rabbit.queue_depths().get(dlq, (0, 0))[0] == 1, 30, "the dead letter")
    assert lines(ledger) == ["started", "started"]  # ran twice, never acked as done
    (headers,) = dlq_headers(broker_url, dlq)
    assert headers[constants.HEADER_REASON] == constants.REASON_DELIVERY_LIMIT
    # The worker lives on with a fresh child.
    assert core.add.apply_async((1, 2), queue=queue_name).get(timeout=30) == 3
    assert worker.proc.poll() is None
    assert rabbit.queue_depths()[queue_name] == (0, 0)


def test_processes_max_tasks_per_child_replaces_children(
    core: Any, start_worker: Any, queue_name: str
) -> None:
    worker = start_worker(
        "-Q", queue_name, "-P", "processes", "-c", "1", "--max-tasks-per-child", "2"
    )
    pids = [core.getpid.apply_async(queue=queue_name).get(timeout=30) for _ in range(6)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5]
    assert pids[0] != pids[4]
    assert worker.proc.pid not in pids
    assert "replacing a pool process" in worker.log()


def test_processes_max_memory_per_child_replaces_a_grown_child(
    core: Any, start_worker: Any, queue_name: str
) -> None:
    # A fresh child is ~40 MB resident; 200 MB more is well over a 150 MB limit.
    start_worker("-Q", queue_name, "-P", "processes", "-c", "1", "--max-memory-per-child", "150000")
    first = core.getpid.apply_async(queue=queue_name).get(timeout=30)
    assert core.getpid.apply_async(queue=queue_name).get(timeout=30) == first  # still small
    assert core.hoard.apply_async((200,), queue=queue_name).get(timeout=30) == first
    assert core.getpid.apply_async(queue=queue_name).get(timeout=30) != first


def _children_of(pid: int) -> set[int]:
    """Live (not zombie) child processes of ``pid``, from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_processes_warm_shutdown_stops_the_children(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path
) -> None:
    worker = start_worker("-Q", queue_name, "-P", "processes", "-c", "2")
    children = _children_of(worker.proc.pid)
    # The pool's two children, and multiprocessing's resource tracker (spawn starts it).
    pool_children = {pid for pid in children if "spawn_main" in _cmdline(pid)}
    assert len(pool_children) == 2 and len(children) == 3
    ledger = tmp_path / "ledger"
    result = core.slow_pid.apply_async((str(ledger), "w1", 1.0), queue=queue_name)
    wait_for(lambda: lines(ledger), what="the task to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert result.get(timeout=5) == "w1"  # finished before the worker left
    assert not [pid for pid in pool_children if _alive(pid)]  # reaped before the worker left
    wait_for(lambda: not [pid for pid in children if _alive(pid)], 5, "the tracker to follow")


def test_processes_cold_shutdown_kills_busy_children(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path, rabbit: Any
) -> None:
    ledger = tmp_path / "ledger"
    worker = start_worker("-Q", queue_name, "-P", "processes", "-c", "1")
    core.slow_pid.apply_async((str(ledger), "c1", 60.0), queue=queue_name)
    wait_for(lambda: lines(ledger), what="the task to start")
    busy = int(lines(ledger)[0].split()[-1])
    worker.signal(signal.SIGTERM)
    wait_for(lambda: "warm shutdown" in worker.log(), what="the warm shutdown to begin")
    worker.signal(signal.SIGINT)
    assert worker.wait(20) == 3
    assert not _alive(busy)
    assert rabbit.queue_depths()[queue_name] == (1, 0)  # the abandoned task is back
