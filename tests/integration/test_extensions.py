"""Worker extensions plug into the delivery lifecycle without touching the handler (#21)."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest

from amqptasks import App, ConfigError, Worker
from tests.integration.conftest import dlq_headers, lines, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.integration.conftest import WorkerProcess

EXT = "tests.integration.apps.extensions"


def test_an_extension_counts_deliveries_and_dead_letters_a_task_name(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    broker_url: str,
    tmp_path: Path,
) -> None:
    log = tmp_path / "ext.log"
    worker = start_worker(
        "-Q",
        queue_name,
        "-c",
        "2",
        "--extension",
        f"{EXT}:CountAndForbid",
        env={"AMQPTASKS_TEST_EXT_LOG": str(log)},
    )
    allowed = [core.add.apply_async((i, i), queue=queue_name) for i in range(5)]
    refused = [core.fail.apply_async((f"no {i}",), queue=queue_name) for i in range(2)]

    assert [r.get(timeout=30) for r in allowed] == [0, 2, 4, 6, 8]
    for result in refused:  # the caller is told, at once
        with pytest.raises(Exception, match="is not run here"):
            result.get(timeout=30)
    dead = wait_for(lambda: dlq_headers(broker_url, f"{queue_name}.dlq"), what="dead letters")
    assert sorted(h["x-amqptasks-reason"] for h in dead) == ["forbidden", "forbidden"]
    assert sorted(h["id"] for h in dead) == sorted(r.id for r in refused)

    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    seen = lines(log)
    assert seen[0].startswith("start ") and seen[0].endswith("prefetch=8")
    assert sum(line.startswith("received ") for line in seen) == 7
    settled = sorted(line.split()[2] for line in seen if line.startswith("settle "))
    assert settled == sorted(["Finish"] * 5 + ["DeadLetter"] * 2)
    assert seen[-1] == "stop received=7"


def test_an_extension_that_raises_dead_letters_before_the_run_and_is_logged_after(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    broker_url: str,
) -> None:
    worker = start_worker("-Q", queue_name, "--extension", f"{EXT}:Broken")
    boom = core.record.apply_async(("boom", "x"), queue=queue_name)
    with pytest.raises(Exception, match="a broken extension"):
        boom.get(timeout=30)
    dead = wait_for(lambda: dlq_headers(broker_url, f"{queue_name}.dlq"), what="dead letter")
    assert [h["x-amqptasks-reason"] for h in dead] == ["worker-error"]
    # The worker keeps serving; the after-run failure is logged, the result still sent.
    assert core.add.apply_async((2, 3), queue=queue_name).get(timeout=30) == 5
    assert "worker extension failed" in worker.log()
    assert "broken after the run" in worker.log()


def test_an_extension_can_defer_a_call_through_the_delay_levels(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    tmp_path: Path,
) -> None:
    log = tmp_path / "ext.log"
    start_worker(
        "-Q",
        queue_name,
        "--extension",
        f"{EXT}:DeferOnce",
        env={"AMQPTASKS_TEST_EXT_LOG": str(log)},
    )
    sent = time.monotonic()
    result = core.add.apply_async((20, 22), queue=queue_name)
    assert result.get(timeout=30) == 42
    assert time.monotonic() - sent >= 1.5  # held by the broker, not run at once
    assert lines(log) == [f"deferred {result.id}"]


def test_what_must_precede_an_ack_failing_is_retried_up_to_the_delivery_cap(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    broker_url: str,
    tmp_path: Path,
) -> None:
    log = tmp_path / "ext.log"
    start_worker(
        "-Q",
        queue_name,
        "--extension",
        f"{EXT}:CannotFinish",
        env={"AMQPTASKS_TEST_EXT_LOG": str(log)},
    )
    ledger = tmp_path / "ledger"
    stuck = core.record.apply_async((str(ledger), "x"), queue=queue_name, task_id="stuck-1")
    dead = wait_for(
        lambda: dlq_headers(broker_url, f"{queue_name}.dlq"), timeout=40, what="dead letter"
    )
    assert [(h["id"], h["x-amqptasks-reason"]) for h in dead] == [("stuck-1", "delivery-limit")]
    # Never acked after a run whose continuation failed, and never looping: each
    # requeue counts as a delivery, and the default cap of 5 ends it.
    assert lines(log) == ["cannot stuck-1"] * 5
    assert lines(ledger) == ["x"] * 5
    with pytest.raises(Exception, match=r"delivered 6 times \(limit 5\)"):
        stuck.get(timeout=30)
    assert core.add.apply_async((1, 1), queue=queue_name).get(timeout=30) == 2


def test_prefetch_multiplier_given_to_the_worker_sizes_the_ack_hold(
    broker_env: str, queue_name: str
) -> None:
    """-c 8 --prefetch-multiplier 16: prefetch 128, acks held up to half of it (64)."""
    app = App("hold")

    async def started() -> tuple[int, int]:
        worker = Worker(app, queues=[queue_name], concurrency=8, prefetch_multiplier=16)
        await worker.start()
        try:
            assert worker.handler is not None
            return worker.prefetch_count, worker.handler.acks.hold_limit
        finally:
            worker.stop(cold=True)
            await worker._shutdown()

    assert asyncio.run(started()) == (128, 64)


def test_a_bad_extension_path_is_one_clear_error() -> None:
    app = App("bad-ext")
    with pytest.raises(ConfigError, match="cannot import no_such_module"):
        Worker(app, extensions=["no_such_module:Thing"])
    with pytest.raises(ConfigError, match=r"not an amqptasks\.worker\.Extension"):
        Worker(app, extensions=["os:sep"])
