"""Time limits, rate limits and the prefetch budget, on a real node."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

import pika
import pytest

from amqptasks import SoftTimeLimitExceeded, TimeLimitExceeded, constants
from tests.conftest import CONSUMER_TIMEOUT_MS
from tests.integration.conftest import dlq_headers, lines, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

# -- soft limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_soft_limit_per_call_is_caught_by_the_task(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path, pool: str
) -> None:
    ledger = tmp_path / "ledger"
    start_worker("-Q", queue_name, "-P", pool, "-c", "1")
    started = time.monotonic()
    result = core.until_soft_limit.apply_async(
        (str(ledger), 20.0), queue=queue_name, soft_time_limit=0.5
    )
    assert result.get(timeout=30) == "cleaned up"
    assert time.monotonic() - started < 10
    assert lines(ledger)[1:] == ["soft limit"]


def test_soft_limit_of_the_worker_and_of_the_task(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path
) -> None:
    start_worker("-Q", queue_name, "-P", "processes", "-c", "1", "--soft-time-limit", "0.5")
    worker_level = core.until_soft_limit.apply_async((str(tmp_path / "w"), 20.0), queue=queue_name)
    assert worker_level.get(timeout=30) == "cleaned up"
    task_level = core.task_level_soft_limit.apply_async((str(tmp_path / "t"),), queue=queue_name)
    assert task_level.get(timeout=30) == "cleaned up"
    # A soft limit the task does not catch fails it like any exception.
    uncaught = core.sleep_through.apply_async((str(tmp_path / "u"), 20.0), queue=queue_name)
    with pytest.raises(SoftTimeLimitExceeded):
        uncaught.get(timeout=30)


def test_asyncio_soft_limit_is_raised_at_the_await(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    start_worker("-Q", queue_name, "-P", "asyncio")
    result = core.async_until_soft_limit.apply_async(
        (str(ledger),), queue=queue_name, soft_time_limit=0.3
    )
    assert result.get(timeout=30) == "cleaned up"
    assert lines(ledger) == ["soft limit"]


# -- hard limits ------------------------------------------------------------------------------


def test_processes_hard_limit_kills_and_replaces_the_child(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path, rabbit: Any, broker_url: str
) -> None:
    ledger = tmp_path / "ledger"
    worker = start_worker("-Q", queue_name, "-P", "processes", "-c", "1")
    started = time.monotonic()
    result = core.sleep_through.apply_async((str(ledger), 30.0), queue=queue_name, time_limit=1)
    with pytest.raises(TimeLimitExceeded, match="hard time limit of 1s"):
        result.get(timeout=30)
    assert time.monotonic() - started < 10
    victim = int(lines(ledger)[0].split()[-1])
    wait_for(lambda: not _alive(victim), 10, "the child to be gone")
    assert lines(ledger) == [f"start {victim}"]  # never finished
    replacement = core.getpid.apply_async(queue=queue_name).get(timeout=30)
    assert replacement not in (victim, worker.proc.pid)
    (headers,) = dlq_headers(broker_url, f"{queue_name}.dlq")
    assert headers[constants.HEADER_REASON] == constants.REASON_TIME_LIMIT
    assert headers[constants.HEADER_EXC_TYPE] == "TimeLimitExceeded"
    assert rabbit.queue_depths()[queue_name] == (0, 0)


def test_threads_hard_limit_abandons_the_thread_and_keeps_the_capacity(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    worker = start_worker("-Q", queue_name, "-P", "threads", "-c", "1")
    started = time.monotonic()
    # One 4 s C call: the thread cannot be interrupted before it returns.
    result = core.sleep_through.apply_async((str(ledger), 4.0), queue=queue_name, time_limit=0.5)
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=30)
    assert core.add.apply_async((1, 1), queue=queue_name).get(timeout=30) == 2
    assert time.monotonic() - started < 3.8  # both answered while the abandoned thread sleeps
    assert "its thread is abandoned and replaced" in worker.log()
    # When time.sleep returns, TimeLimitExceeded is raised in the thread: it stops there.
    time.sleep(max(0.0, started + 5.0 - time.monotonic()))
    assert lines(ledger) == [f"start {worker.proc.pid}"]


def test_asyncio_hard_limit_cancels_the_coroutine(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    start_worker("-Q", queue_name, "-P", "asyncio")
    result = core.async_until_cancelled.apply_async(
        (str(ledger),), queue=queue_name, time_limit=0.5
    )
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=30)
    assert lines(ledger) == ["cancelled"]  # its finally block ran


def test_hard_limit_is_retried_per_the_task_policy(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path, broker_url: str, rabbit: Any
) -> None:
    ledger = tmp_path / "ledger"
    start_worker("-Q", queue_name, "-P", "processes", "-c", "1")
    result = core.always_too_slow.apply_async((str(ledger),), queue=queue_name)
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=60)
    assert len(lines(ledger)) == 2  # the first attempt and one retry
    dlq = f"{queue_name}.dlq"
    wait_for(lambda: rabbit.queue_depths().get(dlq, (0, 0))[0] == 1, 10, "the dead letter")
    (headers,) = dlq_headers(broker_url, dlq)
    assert headers[constants.HEADER_REASON] == constants.REASON_MAX_RETRIES


def test_warns_when_a_time_limit_is_longer_than_the_consumer_timeout(
    core: Any, start_worker: Any, queue_name: str
) -> None:
    quiet = start_worker("-Q", queue_name, "--time-limit", "120")  # default timeout: 30 min
    assert "consumer timeout" not in quiet.log()
    loud = start_worker(
        "-Q", queue_name, "--time-limit", "120", env={"AMQPTASKS_BROKER_CONSUMER_TIMEOUT": "60"}
    )
    log = loud.log()
    assert "time limits longer than the broker's consumer timeout" in log
    assert "setting broker_consumer_timeout" in log


# -- rate limits and prefetch -----------------------------------------------------------------


def test_rate_limit_spaces_calls_without_holding_more_than_the_prefetch(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path, rabbit: Any
) -> None:
    ledger = tmp_path / "ledger"
    start_worker("-Q", queue_name, "-c", "2", "--prefetch-multiplier", "1")
    with core.app.batch():
        results = [
            core.rate_limited.apply_async((str(ledger), f"r{i}"), queue=queue_name)
            for i in range(20)
        ]
    samples = []
    while not results[-1].ready():
        samples.append(rabbit.queue_depths()[queue_name])
        time.sleep(0.1)
    assert [r.get(timeout=30) for r in results] == [f"r{i}" for i in range(20)]
    times = sorted(float(line.split()[1]) for line in lines(ledger))
    assert times[-1] - times[0] >= 3.7  # 5/s: 19 intervals of 0.2 s after the first call
    assert samples and all(unacked <= 2 for _ready, unacked in samples)
    assert any(ready > 0 for ready, _unacked in samples[:3])  # the rest waited in the broker


@pytest.fixture
def three_queues(unique_name: Callable[[str], str], broker_url: str) -> Iterator[list[str]]:
    names = [unique_name(f"q{i}") for i in range(3)]
    yield names
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        for name in names:
            channel.queue_delete(name)
            channel.queue_delete(f"{name}.dlq")
    finally:
        connection.close()


def test_prefetch_budget_is_shared_by_the_queues(
    core: Any, start_worker: Any, three_queues: list[str], tmp_path: Path, rabbit: Any
) -> None:
    ledger = tmp_path / "ledger"
    flag = tmp_path / "flag"
    flag.write_text("hold")
    worker = start_worker("-Q", ",".join(three_queues), "-c", "2", "--prefetch-multiplier", "2")
    results = [
        core.wait_for_flag.apply_async((str(flag), str(ledger), f"{q}-{i}"), queue=q)
        for q in three_queues
        for i in range(4)
    ]
    wait_for(lambda: len(lines(ledger)) == 2, what="two tasks to run")

    def unacked() -> int:
        depths = rabbit.queue_depths()
        return sum(depths[q][1] for q in three_queues)

    wait_for(lambda: unacked() == 4, what="the worker to fill its prefetch budget")
    time.sleep(0.5)
    held = [rabbit.queue_depths()[q] for q in three_queues]
    assert sum(u for _r, u in held) == 4  # concurrency 2 x multiplier 2, not 4 per queue
    assert all(u >= 1 for _r, u in held)  # every queue gets its share
    assert sum(r for r, _u in held) == 12 - 4
    assert len(lines(ledger)) == 2
    flag.unlink()
    assert sorted(r.get(timeout=30) for r in results) == sorted(
        f"{q}-{i}" for q in three_queues for i in range(4)
    )
    assert "prefetch 4 (all queues together)" in worker.log()


# -- the slow one -------------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_slow_cpu_bound_task_of_60s_keeps_the_connection_with_heartbeat_5s(
    core: Any, start_worker: Any, queue_name: str, broker_url: str, rabbit: Any
) -> None:
    # The session node's consumer timeout is 60 s; a 60 s task would race its check.
    # set_env applies to channels opened afterwards: the worker's.
    rabbit.ctl("eval", "application:set_env(rabbit, consumer_timeout, 600000).")
    try:
        name = f"heartbeat-{os.getpid()}-{queue_name[-8:]}"
        worker = start_worker(
            "-Q",
            queue_name,
            "-P",
            "processes",
            "-c",
            "1",
            "-n",
            name,
            env={"AMQPTASKS_BROKER_URL": broker_url + "?heartbeat=5"},
        )
        before = _connections(rabbit, name)
        assert len(before) == 1 and before[0][1] == 5  # heartbeat 5 s negotiated
        result = core.burn_cpu.apply_async((60.0,), queue=queue_name)
        time.sleep(30)
        assert _connections(rabbit, name) == before  # mid-task: the same connection
        value = result.get(timeout=120)
        assert value["pid"] != worker.proc.pid and value["spins"] > 0
        assert _connections(rabbit, name) == before  # never dropped or replaced
        log = worker.log()
        assert "reconnect" not in log.lower()
        assert "[error" not in log and "[warning" not in log
        assert rabbit.queue_depths()[queue_name] == (0, 0)
    finally:
        rabbit.ctl("eval", f"application:set_env(rabbit, consumer_timeout, {CONSUMER_TIMEOUT_MS}).")


def _connections(rabbit: Any, worker_name: str) -> list[tuple[str, int, int]]:
    """``(name, heartbeat timeout, connected_at)`` of the connections the worker named.

    ``name`` is the broker's (client address -> server address): a reconnect
    would show a new one.
    """
    out = rabbit.ctl(
        "list_connections",
        "-q",
        "--formatter",
        "json",
        "name",
        "client_properties",
        "timeout",
        "connected_at",
    )
    found = []
    for row in json.loads(out) if out.strip() else []:
        properties = {item[0]: item[2] for item in row["client_properties"]}
        if properties.get("connection_name") == f"amqptasks worker {worker_name}":
            found.append((row["name"], int(row["timeout"]), int(row["connected_at"])))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
