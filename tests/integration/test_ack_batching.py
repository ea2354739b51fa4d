"""Batched acks on a real node: out-of-order finishes, failures and rejects mixed in.

The worker merges acks into ``multiple=True`` frames (amqptasks.worker.acks); a
wrong merge would ack a message still running (lost on a crash) or ack a tag
twice (the broker closes the channel with PRECONDITION_FAILED).
"""

from __future__ import annotations

import random
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from amqptasks.exceptions import TaskError
from tests.integration.conftest import dlq_headers, lines, wait_for


def _node_log(rabbit: Any) -> str:
    return "".join(
        p.read_text(errors="replace") for p in Path(rabbit.base_dir, "log").glob("*.log")
    )


@pytest.mark.parametrize("pool", ["threads", "asyncio"])
def test_mixed_outcomes_finishing_out_of_order_settle_every_message_once(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path, rabbit: Any, pool: str
) -> None:
    ledger = tmp_path / "ledger"
    worker = start_worker("-Q", queue_name, "-P", pool, "-c", "8")
    rng = random.Random(6)
    calls = []
    for i in range(240):
        kind = rng.choice(["slow", "slow", "slow", "add", "fail", "reject"])
        if kind == "slow":
            call = core.slow.apply_async(
                (str(ledger), f"t{i}", rng.uniform(0, 0.05)), queue=queue_name
            )
        elif kind == "add":
            call = core.add.apply_async((i, i), queue=queue_name)
        elif kind == "fail":
            call = core.fail.apply_async((f"no {i}",), queue=queue_name)
        else:
            call = core.reject_it.apply_async((f"bad {i}",), queue=queue_name)
        calls.append((kind, i, call))

    for kind, i, call in calls:
        if kind == "slow":
            assert call.get(timeout=60) == f"t{i}"
        elif kind == "add":
            assert call.get(timeout=60) == 2 * i
        else:
            with pytest.raises((ValueError, TaskError)):
                call.get(timeout=60)

    wait_for(lambda: rabbit.queue_depths().get(queue_name) == (0, 0), what="nothing left unacked")
    # Failures and rejects end in the DLQ, each exactly once.
    failed = sorted(h["id"] for h in dlq_headers(rabbit.amqp_url, f"{queue_name}.dlq"))
    assert failed == sorted(call.id for kind, _, call in calls if kind in ("fail", "reject"))
    ran = Counter(line.split()[1] for line in lines(ledger) if line.startswith("done"))
    assert set(ran.values()) == {1}  # no slow task ran twice
    assert len(ran) == sum(1 for kind, _, _ in calls if kind == "slow")
    # The channel stayed open all along: the same worker still serves tasks.
    assert core.add.apply_async((20, 22), queue=queue_name).get(timeout=30) == 42
    assert "PRECONDITION_FAILED" not in _node_log(rabbit)
    assert "unknown delivery tag" not in worker.log()


def test_warm_shutdown_sends_the_last_acks_before_closing(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path, rabbit: Any
) -> None:
    ledger = tmp_path / "ledger"
    worker = start_worker("-Q", queue_name, "-P", "threads", "-c", "4")
    results = [
        core.record.apply_async((str(ledger), f"r{i}"), queue=queue_name) for i in range(300)
    ]
    assert [r.get(timeout=60) for r in results] == [f"r{i}" for i in range(300)]
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    # Had an ack been left behind, its message would be ready again now.
    assert rabbit.queue_depths()[queue_name] == (0, 0)
    start_worker("-Q", queue_name, "-P", "threads", "-c", "4")
    assert core.add.apply_async((1, 1), queue=queue_name).get(timeout=30) == 2
    assert sorted(lines(ledger)) == sorted(f"r{i}" for i in range(300))  # none ran twice
