"""Worker crashes, shutdowns and broker restarts: nothing is lost or run twice by mistake."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from amqptasks import states
from tests.integration.conftest import lines, wait_for


def test_task_of_a_killed_worker_runs_again_on_restart(core: Any, start_worker: Any,
                                                       queue_name: str, tmp_path: Path,
                                                       rabbit: Any) -> None:
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


def test_acks_early_task_is_not_redelivered_after_a_crash(core: Any, start_worker: Any,
                                                          queue_name: str, tmp_path: Path,
                                                          rabbit: Any) -> None:
    ledger = tmp_path / "ledger"
    first = start_worker("-Q", queue_name)
    core.slow_early.apply_async((str(ledger), "e1", 2.0), queue=queue_name)
    wait_for(lambda: "start e1" in lines(ledger), what="the task to start")
    first.proc.kill()
    first.wait(10)
    assert rabbit.queue_depths()[queue_name] == (0, 0)  # at-most-once: it was acked first


def test_sigterm_finishes_running_tasks_and_returns_the_rest(
        core: Any, start_worker: Any, queue_name: str, tmp_path: Path, rabbit: Any) -> None:
    ledger = tmp_path / "ledger"
    worker = start_worker("-Q", queue_name, "-c", "1", "--prefetch-multiplier", "4")
    results = [core.slow.apply_async((str(ledger), f"s{i}", 1.5), queue=queue_name)
               for i in range(4)]
    wait_for(lambda: "start s0" in lines(ledger), what="the first task to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert results[0].get(timeout=5) == "s0"
    assert lines(ledger) == ["start s0", "done s0"]
    assert rabbit.queue_depths()[queue_name] == (3, 0)  # unstarted ones are back, unacked none
    start_worker("-Q", queue_name, "-c", "3")
    assert sorted(r.get(timeout=30) for r in results[1:]) == ["s1", "s2", "s3"]


def test_second_signal_is_a_cold_shutdown(core: Any, start_worker: Any, queue_name: str,
                                          tmp_path: Path, rabbit: Any) -> None:
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


def test_confirmed_messages_survive_a_broker_restart(core: Any, start_worker: Any,
                                                     queue_name: str, rabbit: Any) -> None:
    results = [core.add.apply_async((i, i), queue=queue_name) for i in range(20)]
    rabbit.stop_app()
    rabbit.start_app()
    assert rabbit.queue_depths()[queue_name] == (20, 0)
    start_worker("-Q", queue_name)
    # the producer reconnects by itself; replies come to its (durable) reply queue
    assert core.add.apply_async((50, 50), queue=queue_name).get(timeout=30) == 100
    assert [r.get(timeout=30) for r in results] == [2 * i for i in range(20)]
