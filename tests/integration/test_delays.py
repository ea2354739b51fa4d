"""Delays, retries and dead letters, held and moved by the broker (issue #4).

The first fixture of this module publishes a task delayed 150 s while a worker
consumes, and the last test checks it ran once with no channel closed by the
session node's 60 s consumer timeout; the tests in between use the wait.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pika
import pytest

from amqptasks import Reject, states
from tests.conftest import CONSUMER_TIMEOUT_MS
from tests.integration.conftest import (
    CORE_APP,
    WorkerProcess,
    cli_env,
    lines,
    wait_for,
    worker_command,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

LONG_DELAY = 150.0
LONG_QUEUE = "itest.long-delay"


def _level_depth(rabbit: Any, level: int) -> tuple[int, int]:
    return rabbit.queue_depths().get(f"amqptasks.delay.level.{level:02d}", (0, 0))


@pytest.fixture(scope="module")
def long_delay(
    core: Any,
    broker_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """A worker on LONG_QUEUE, and a task delayed LONG_DELAY seconds sent to it."""
    base = tmp_path_factory.mktemp("long-delay")
    log_path = base / "worker.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            worker_command("-Q", LONG_QUEUE),
            env=cli_env(broker_url),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    worker = WorkerProcess(proc, log_path)
    worker.wait_ready()
    ledger = base / "ledger"
    sent = time.time()
    result = core.stamp.apply_async((str(ledger), "long"), queue=LONG_QUEUE, countdown=LONG_DELAY)
    yield {"result": result, "ledger": ledger, "sent": sent, "worker": worker}
    worker.signal(signal.SIGTERM)
    worker.wait(30)


def test_countdown_is_held_by_the_broker_not_the_worker(
    core: Any, long_delay: Any, start_worker: Any, queue_name: str, tmp_path: Path, rabbit: Any
) -> None:
    start_worker("-Q", queue_name)
    ledger = tmp_path / "ledger"
    sent = time.time()
    result = core.stamp.apply_async((str(ledger), "c"), queue=queue_name, countdown=5)
    time.sleep(1.0)
    assert rabbit.queue_depths()[queue_name] == (0, 0)  # the worker holds nothing
    assert _level_depth(rabbit, 2)[0] >= 1  # 5 s = 4 s at level 2, then 1 s at level 0
    ran_at = result.get(timeout=30)
    assert 5.0 <= ran_at - sent < 6.5


def test_eta_two_hours_ahead_waits_in_the_delay_queues_across_a_worker_restart(
    core: Any, long_delay: Any, start_worker: Any, queue_name: str, rabbit: Any, tmp_path: Path
) -> None:
    worker = start_worker("-Q", queue_name)
    before = _level_depth(rabbit, 12)[0]
    eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    core.stamp.apply_async((str(tmp_path / "never"), "2h"), queue=queue_name, eta=eta)
    # 7200 s = 4096 + 2048 + 1024 + 32: it enters at level 12
    assert _level_depth(rabbit, 12)[0] == before + 1
    assert rabbit.queue_depths()[queue_name] == (0, 0)
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    start_worker("-Q", queue_name)
    assert _level_depth(rabbit, 12)[0] == before + 1
    assert rabbit.queue_depths()[queue_name] == (0, 0)


def test_three_hundred_random_countdowns_run_on_time(
    core: Any, long_delay: Any, start_worker: Any, queue_name: str, tmp_path: Path
) -> None:
    start_worker("-Q", queue_name, "-c", "8")
    ledger = tmp_path / "ledger"
    rng = random.Random(4)
    due: dict[str, float] = {}
    with core.app.batch():
        for i in range(300):
            countdown = rng.uniform(1, 30)
            token = f"t{i}"
            due[token] = time.time() + countdown
            core.stamp.apply_async(
                (str(ledger), token), queue=queue_name, countdown=countdown, ignore_result=True
            )
    wait_for(lambda: len(lines(ledger)) >= 300, timeout=60, what="300 delayed tasks")
    lateness = []
    for line in lines(ledger):
        token, ran = line.split()
        lateness.append(float(ran) - due[token])
    assert len(lateness) == 300
    lateness.sort()
    p50, p99 = statistics.median(lateness), lateness[int(0.99 * len(lateness)) - 1]
    print(
        f"\nETA lateness over 300 tasks: min {lateness[0]:.3f} s, p50 {p50:.3f} s, "
        f"p99 {p99:.3f} s, max {lateness[-1]:.3f} s"
    )
    assert lateness[0] >= 0, "a task started before its ETA"
    assert lateness[-1] <= 1.5, f"a task started {lateness[-1]:.2f} s after its ETA"


def test_failing_task_is_retried_with_growing_delays_then_dead_lettered(
    core: Any, long_delay: Any, start_worker: Any, queue_name: str, tmp_path: Path, amqp: Any
) -> None:
    start_worker("-Q", queue_name)
    ledger = tmp_path / "ledger"
    result = core.always_fails.apply_async((str(ledger), "x"), queue=queue_name)
    wait_for(lambda: result.state == states.RETRY, what="the RETRY state")
    with pytest.raises(OSError, match="service down for x"):
        result.get(timeout=30)
    assert result.state == states.FAILURE
    runs = [float(line.split()[1]) for line in lines(ledger)]
    assert len(runs) == 4  # max_retries=3, plus the first attempt
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    for gap, backoff in zip(gaps, (1, 2, 4), strict=True):
        assert backoff <= gap < backoff + 1.5
    method, properties, body = wait_for(
        lambda: _basic_get(amqp, f"{queue_name}.dlq"), what="the dead letter"
    )
    headers = properties.headers
    assert headers["x-amqptasks-reason"] == "max-retries-exceeded"
    assert headers["x-amqptasks-exc-type"] == "OSError"
    assert "service down for x" in headers["x-amqptasks-error"]
    assert "raise OSError" in headers["x-amqptasks-traceback"]
    assert headers["x-amqptasks-attempts"] == 4
    assert headers["x-amqptasks-original-routing-key"] == queue_name
    assert headers["x-amqptasks-worker"].startswith("worker@")
    assert headers["id"] == result.id and headers["retries"] == 3
    assert "x-death" not in headers
    assert json.loads(body)[0] == [str(ledger), "x"]
    amqp.basic_ack(method.delivery_tag)


def test_a_task_retried_five_times_through_the_same_levels_is_not_dropped(
    core: Any, long_delay: Any, start_worker: Any, queue_name: str, tmp_path: Path
) -> None:
    start_worker("-Q", queue_name)
    ledger = tmp_path / "ledger"
    result = core.flaky.apply_async((str(ledger), "f", 5), queue=queue_name)
    assert result.get(timeout=40) == 5
    assert lines(ledger) == [f"f {i}" for i in range(6)]


def test_reject_goes_straight_to_the_dlq(
    core: Any, long_delay: Any, start_worker: Any, queue_name: str, amqp: Any
) -> None:
    start_worker("-Q", queue_name)
    result = core.reject_it.apply_async(("bad input",), queue=queue_name)
    with pytest.raises(Reject, match="bad input"):
        result.get(timeout=20)
    _method, properties, _body = wait_for(
        lambda: _basic_get(amqp, f"{queue_name}.dlq"), what="the rejected message"
    )
    assert properties.headers["x-amqptasks-reason"] == "rejected"
    assert properties.headers["x-amqptasks-attempts"] == 1


def test_dlq_cli_lists_shows_and_replays(
    core: Any, long_delay: Any, start_worker: Any, queue_name: str, tmp_path: Path, broker_url: str
) -> None:
    start_worker("-Q", queue_name)
    flag, ledger = tmp_path / "flag", tmp_path / "ledger"
    flag.write_text("broken")
    results = [
        core.fails_while.apply_async((str(flag), str(ledger)), queue=queue_name) for _ in range(3)
    ]
    for result in results:
        with pytest.raises(RuntimeError):
            result.get(timeout=20)
    wait_for(lambda: _depth(broker_url, f"{queue_name}.dlq") == 3, what="3 dead letters")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "amqptasks", *args, "-A", CORE_APP],
            env=cli_env(broker_url),
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = cli("dlq", "ls", queue_name)
    assert listed.returncode == 0, listed.stderr
    assert "3 message(s)" in listed.stdout
    assert "failed" in listed.stdout and "RuntimeError" in listed.stdout
    shown = cli("dlq", "show", queue_name, "--limit", "1")
    assert shown.returncode == 0 and "still exists" in shown.stdout
    assert _depth(broker_url, f"{queue_name}.dlq") == 3  # looking removes nothing
    flag.unlink()
    replayed = cli("dlq", "replay", queue_name, "--limit", "2")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 2" in replayed.stdout
    wait_for(lambda: len(lines(ledger)) == 2, what="the replayed tasks to run")
    assert _depth(broker_url, f"{queue_name}.dlq") == 1
    skipped = cli("dlq", "replay", queue_name, "--reason", "rejected")
    assert "replayed 0" in skipped.stdout
    purged = cli("dlq", "purge", queue_name, "--yes")
    assert purged.returncode == 0 and "purged 1" in purged.stdout
    status = cli("delays", "status")
    assert status.returncode == 0 and "level" in status.stdout


def test_an_early_message_from_another_producer_is_delayed_not_held(
    core: Any,
    long_delay: Any,
    start_worker: Any,
    queue_name: str,
    tmp_path: Path,
    amqp: Any,
    rabbit: Any,
) -> None:
    """Celery publishes ETA tasks straight to the queue and lets its worker hold them."""
    start_worker("-Q", queue_name)
    ledger = tmp_path / "ledger"
    eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=4)
    headers = {
        "lang": "py",
        "task": core.stamp.name,
        "id": "celery-style-eta",
        "eta": eta.isoformat(),
        "retries": 0,
        "root_id": "celery-style-eta",
    }
    amqp.basic_publish(
        "",
        queue_name,
        json.dumps([[str(ledger), "e"], {}, {}]),
        pika.BasicProperties(
            content_type="application/json",
            content_encoding="utf-8",
            headers=headers,
            delivery_mode=2,
            correlation_id="celery-style-eta",
        ),
        mandatory=True,
    )
    time.sleep(1.0)
    assert rabbit.queue_depths()[queue_name] == (0, 0)  # not held by the worker
    wait_for(lambda: lines(ledger), timeout=20, what="the task to run")
    ran = float(lines(ledger)[0].split()[1])
    assert ran >= eta.timestamp()


def test_a_task_that_keeps_killing_its_worker_ends_in_the_dlq(
    core: Any, long_delay: Any, start_worker: Any, queue_name: str, tmp_path: Path, amqp: Any
) -> None:
    ledger = tmp_path / "ledger"
    env = {"AMQPTASKS_WORKER_MAX_DELIVERIES": "2"}
    core.die.apply_async((str(ledger),), queue=queue_name, ignore_result=True)
    for run in (1, 2):
        worker = start_worker("-Q", queue_name, env=env)
        worker.wait(30)  # the task SIGKILLs it
        assert lines(ledger) == ["started"] * run
    start_worker("-Q", queue_name, env=env)
    _method, properties, _body = wait_for(
        lambda: _basic_get(amqp, f"{queue_name}.dlq"), what="the poison message in the DLQ"
    )
    assert properties.headers["x-amqptasks-reason"] == "delivery-limit"
    assert lines(ledger) == ["started", "started"]


def test_zz_long_delay_ran_once_and_no_channel_was_closed(long_delay: Any, rabbit: Any) -> None:
    assert CONSUMER_TIMEOUT_MS == 60_000
    value = long_delay["result"].get(timeout=LONG_DELAY + 60)
    assert value - long_delay["sent"] >= LONG_DELAY
    assert len(lines(long_delay["ledger"])) == 1
    log = long_delay["worker"].log()
    assert "connection" not in log.lower() or "closed" not in log.lower(), log
    node_logs = "".join(
        p.read_text(errors="replace") for p in Path(rabbit.base_dir, "log").glob("*.log")
    )
    assert "consumer ack timed out" not in node_logs.lower()
    assert "delivery acknowledgement on channel" not in node_logs


def _basic_get(channel: Any, queue: str) -> Any:
    method, properties, body = channel.basic_get(queue)
    return (method, properties, body) if method is not None else None


def _depth(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()
