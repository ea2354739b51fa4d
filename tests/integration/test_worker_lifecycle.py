"""Worker crashes, shutdowns and broker restarts: nothing is lost or run twice by mistake."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest

from amqptasks import BrokerUnreachable, ConnectionLost, states
from tests.integration.conftest import lines, wait_for

if TYPE_CHECKING:
    from pathlib import Path


def test_task_of_a_killed_worker_runs_again_on_restart(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path, rabbit: Any
) -> None:
    ledger = tmp_path / "ledger"
    first = start_worker("-Q", queue_name)
    result = core.slow.apply_async((str(ledger), "t1", 2.0), queue=queue_name)
    wait_for(lambda: "start t1" in lines(ledger), what="the task to start")
    first.proc.kill()  # SIGKILL mid-task: no ack was sent
    first.wait(10)
    assert rabbit.queue_depths()[queue_name] == (1, 0)
    start_worker("-Q", queue_name)
    assert result.get(timeout=30) == "t1"
    assert lines(ledger) == ["start t1", "start t1", "done t1"]
    assert rabbit.queue_depths()[queue_name] == (0, 0)


def test_acks_early_task_is_not_redelivered_after_a_crash(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path, rabbit: Any
) -> None:
    ledger = tmp_path / "ledger"
    first = start_worker("-Q", queue_name)
    core.slow_early.apply_async((str(ledger), "e1", 2.0), queue=queue_name)
    wait_for(lambda: "start e1" in lines(ledger), what="the task to start")
    first.proc.kill()
    first.wait(10)
    assert rabbit.queue_depths()[queue_name] == (0, 0)  # at-most-once: it was acked first


def test_sigterm_finishes_running_tasks_and_returns_the_rest(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path, rabbit: Any
) -> None:
    ledger = tmp_path / "ledger"
    worker = start_worker("-Q", queue_name, "-c", "1", "--prefetch-multiplier", "4")
    results = [
        core.slow.apply_async((str(ledger), f"s{i}", 1.5), queue=queue_name) for i in range(4)
    ]
    wait_for(lambda: "start s0" in lines(ledger), what="the first task to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert results[0].get(timeout=5) == "s0"
    assert lines(ledger) == ["start s0", "done s0"]
    assert rabbit.queue_depths()[queue_name] == (3, 0)  # unstarted ones are back, unacked none
    start_worker("-Q", queue_name, "-c", "3")
    assert sorted(r.get(timeout=30) for r in results[1:]) == ["s1", "s2", "s3"]


def test_second_signal_is_a_cold_shutdown(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path, rabbit: Any
) -> None:
    ledger = tmp_path / "ledger"
    worker = start_worker("-Q", queue_name, "-c", "1")
    result = core.slow.apply_async((str(ledger), "c1", 30.0), queue=queue_name)
    wait_for(lambda: "start c1" in lines(ledger), what="the task to start")
    worker.signal(signal.SIGTERM)
    wait_for(lambda: "warm shutdown" in worker.log(), what="the warm shutdown to begin")
    worker.signal(signal.SIGINT)
    assert worker.wait(15) == 3
    assert "cold shutdown" in worker.log()
    assert rabbit.queue_depths()[queue_name] == (1, 0)  # the abandoned task is back
    assert result.state == states.PENDING


def test_confirmed_messages_survive_a_broker_restart(
    core: Any, start_worker: Any, queue_name: str, rabbit: Any
) -> None:
    results = [core.add.apply_async((i, i), queue=queue_name) for i in range(20)]
    rabbit.stop_app()
    rabbit.start_app()
    assert rabbit.queue_depths()[queue_name] == (20, 0)
    start_worker("-Q", queue_name)
    # the producer reconnects by itself; replies come to its (durable) reply queue
    assert core.add.apply_async((50, 50), queue=queue_name).get(timeout=30) == 100
    assert [r.get(timeout=30) for r in results] == [2 * i for i in range(20)]


def test_publisher_retries_across_a_broker_restart_with_the_same_id(
    core: Any, start_worker: Any, queue_name: str, rabbit: Any
) -> None:
    import threading

    assert core.add.apply_async((0, 0), queue=queue_name, ignore_result=True)  # connected
    stopped = threading.Event()

    def restart() -> None:
        rabbit.stop_app()
        stopped.set()
        time.sleep(1.0)
        rabbit.start_app()

    restarter = threading.Thread(target=restart)
    restarter.start()
    stopped.wait(60)
    started = time.monotonic()
    result = core.add.apply_async(
        (20, 22),
        queue=queue_name,
        task_id="retry-across-restart",
        retry_policy={
            "max_retries": 60,
            "interval_start": 0.5,
            "interval_step": 0.5,
            "interval_max": 1.0,
        },
    )
    restarter.join()
    assert time.monotonic() - started > 0.5  # it did wait for the broker
    assert result.id == "retry-across-restart"
    start_worker("-Q", queue_name)
    assert result.get(timeout=30) == 42


def test_publisher_gives_up_when_its_retries_are_spent(
    broker_env: str, rabbit: Any, core: Any
) -> None:
    rabbit.stop_app()
    try:
        started = time.monotonic()
        with pytest.raises(BrokerUnreachable):
            core.add.apply_async(
                (1, 1), retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.1}
            )
        with pytest.raises(BrokerUnreachable):
            core.add.apply_async((1, 1), retry=False)

        async def send() -> None:
            try:
                await core.add.aapply_async((1, 1), retry_policy={"max_retries": 1})
            finally:
                await core.app.aclose()

        with pytest.raises((BrokerUnreachable, ConnectionLost)):
            asyncio.run(send())
        assert time.monotonic() - started < 30
    finally:
        rabbit.start_app()
