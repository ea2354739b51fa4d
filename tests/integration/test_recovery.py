"""Recovery: the worker and the producers survive resets, silent peers and broker restarts.

Workers and producers under test connect through a :class:`FaultProxy` (or
straight to the session broker when the broker itself is stopped, killed or
frozen) with ``?heartbeat=2``: a silent peer is then declared dead after about
two heartbeat timeouts (4 s) plus the 1 s check interval.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import pika
import pytest

from amqptasks import App, BrokerUnreachable, ConnectionLost
from tests.integration.conftest import lines, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from amqptasks.testing.proxy import FaultProxy
    from tests.integration.conftest import WorkerProcess

HEARTBEAT = 2
#: Two heartbeat timeouts, the 1 s check interval of the client, and slack for a busy box.
DETECTION_LIMIT = 2 * HEARTBEAT + 1 + 2.5
LOST = "broker connection lost"
RESTORED = "broker connection restored"


def with_heartbeat(url: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}heartbeat={HEARTBEAT}"


def consumers(rabbit: Any, queue: str) -> list[int]:
    """Prefetch count of each consumer of ``queue``."""
    out = rabbit.ctl("list_consumers", "-q", "--formatter", "json", "queue_name", "prefetch_count")
    rows = json.loads(out) if out.strip() else []
    return [int(row["prefetch_count"]) for row in rows if row["queue_name"] == queue]


def one_consumer_with_prefetch(rabbit: Any, queue: str, prefetch: int) -> None:
    """The worker consumes ``queue`` again, once, with its QoS restored."""
    wait_for(
        lambda: consumers(rabbit, queue) == [prefetch],
        timeout=30,
        what=f"one consumer of {queue} with prefetch {prefetch}",
    )


def wait_log(worker: WorkerProcess, text: str, count: int = 1, timeout: float = 30) -> float:
    """Wait until ``text`` appears ``count`` times in the worker's log; return when."""
    wait_for(lambda: worker.log().count(text) >= count, timeout=timeout, what=repr(text))
    return time.monotonic()


def declared_again_and_served(core: Any, rabbit: Any, amqp: Any, queue: str) -> None:
    """A worker (-c 1) consumes ``queue`` again, declared anew with its arguments and
    its dead-letter queue, and runs a task from it."""
    one_consumer_with_prefetch(rabbit, queue, 4)
    declared = amqp.queue_declare(
        queue,
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{queue}.dlq"},
    )
    assert declared.method.consumer_count == 1
    amqp.queue_declare(f"{queue}.dlq", passive=True)
    assert core.add.apply_async((3, 4), queue=queue).get(timeout=20) == 7


def test_worker_resumes_after_a_connection_reset_without_acking_on_the_new_channel(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    fault_proxy: FaultProxy,
    broker_url: str,
    queue_name: str,
    rabbit: Any,
    tmp_path: Path,
) -> None:
    url = fault_proxy.url(broker_url, heartbeat=HEARTBEAT)
    worker = start_worker("-Q", queue_name, "-c", "2", env={"AMQPTASKS_BROKER_URL": url})
    assert core.add.apply_async((1, 2), queue=queue_name).get(timeout=20) == 3
    ledger = tmp_path / "ledger"
    slow = core.slow.apply_async((str(ledger), "s1", 2.0), queue=queue_name)
    wait_for(lambda: "start s1" in lines(ledger), what="the slow task to start")

    fault_proxy.reset()  # the worker's connection dies mid-task, reconnects fail for 2 s
    wait_log(worker, LOST)
    time.sleep(2.0)
    fault_proxy.restore()
    wait_log(worker, RESTORED)
    one_consumer_with_prefetch(rabbit, queue_name, 8)

    # The delivery of the lost channel was not acked (the broker put it back): it
    # runs again, and its late ack on the dead channel is not sent on the new one.
    assert slow.get(timeout=30) == "s1"
    wait_for(lambda: lines(ledger).count("done s1") == 2, what="the redelivered copy to finish")
    assert core.add.apply_async((2, 3), queue=queue_name).get(timeout=20) == 5
    wait_for(lambda: rabbit.queue_depths()[queue_name] == (0, 0), what="nothing left unacked")
    log = worker.log()
    assert log.count(LOST) == 1, log  # one warning per outage, not one per attempt
    assert "unknown delivery tag" not in log
    assert worker.proc.poll() is None


def test_worker_detects_a_black_hole_within_two_heartbeats(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    fault_proxy: FaultProxy,
    broker_url: str,
    queue_name: str,
    rabbit: Any,
    tmp_path: Path,
) -> None:
    url = fault_proxy.url(broker_url, heartbeat=HEARTBEAT)
    worker = start_worker("-Q", queue_name, "-c", "1", env={"AMQPTASKS_BROKER_URL": url})
    assert core.add.apply_async((1, 1), queue=queue_name).get(timeout=20) == 2
    one_consumer_with_prefetch(rabbit, queue_name, 4)
    ledger = tmp_path / "ledger"
    slow = core.slow.apply_async((str(ledger), "b1", 1.0), queue=queue_name)
    wait_for(lambda: "start b1" in lines(ledger), what="the slow task to start")

    started = time.monotonic()
    fault_proxy.blackhole()  # the task finishes into the silence: no reply, no ack
    detected = wait_log(worker, LOST, timeout=20) - started
    assert detected < DETECTION_LIMIT, f"dead connection noticed after {detected:.1f}s"
    assert "missed heartbeats" in worker.log()
    fault_proxy.restore()
    wait_log(worker, RESTORED)
    # The broker drops the old connection (and its consumer) on its own heartbeat timeout,
    # and delivers the unacked message again.
    one_consumer_with_prefetch(rabbit, queue_name, 4)
    assert slow.get(timeout=30) == "b1"
    assert core.add.apply_async((20, 22), queue=queue_name).get(timeout=20) == 42
    wait_for(lambda: rabbit.queue_depths()[queue_name] == (0, 0), what="nothing left unacked")
    # At least once: usually twice (the ack was lost with the link), but the held
    # bytes may still flow when the link is restored before the broker gives up on it.
    assert lines(ledger).count("done b1") in (1, 2)
    assert worker.log().count(LOST) == 1


def test_worker_declares_a_queue_deleted_while_it_was_disconnected(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    fault_proxy: FaultProxy,
    broker_url: str,
    queue_name: str,
    rabbit: Any,
    amqp: Any,
) -> None:
    url = fault_proxy.url(broker_url, heartbeat=HEARTBEAT)
    worker = start_worker("-Q", queue_name, "-c", "1", env={"AMQPTASKS_BROKER_URL": url})
    fault_proxy.reset()
    wait_log(worker, LOST)
    amqp.queue_delete(queue_name)
    amqp.queue_delete(f"{queue_name}.dlq")
    fault_proxy.restore()
    wait_log(worker, RESTORED)
    declared_again_and_served(core, rabbit, amqp, queue_name)


def test_worker_recovers_from_a_broker_restart_and_recovery_is_measured(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    broker_url: str,
    queue_name: str,
    rabbit: Any,
    record_property: Callable[[str, object], None],
) -> None:
    worker = start_worker(
        "-Q", queue_name, "-c", "2", env={"AMQPTASKS_BROKER_URL": with_heartbeat(broker_url)}
    )
    assert core.add.apply_async((1, 1), queue=queue_name).get(timeout=20) == 2
    rabbit.stop_app()
    try:
        wait_log(worker, LOST)
    finally:
        rabbit.start_app()
    back = time.monotonic()
    result = core.add.apply_async((5, 5), queue=queue_name)
    assert result.get(timeout=30) == 10
    recovery = time.monotonic() - back
    record_property("recovery_seconds", round(recovery, 2))
    print(f"\nrecovery after a broker restart: {recovery:.2f}s")
    assert recovery < 10, f"first task completed {recovery:.1f}s after the broker was back"
    one_consumer_with_prefetch(rabbit, queue_name, 8)
    assert worker.log().count(LOST) == 1


def test_worker_recovers_from_a_killed_broker(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    broker_url: str,
    queue_name: str,
    rabbit: Any,
) -> None:
    worker = start_worker(
        "-Q", queue_name, "-c", "1", env={"AMQPTASKS_BROKER_URL": with_heartbeat(broker_url)}
    )
    assert core.add.apply_async((1, 1), queue=queue_name).get(timeout=20) == 2
    rabbit.kill()  # SIGKILL: no connection.close, the sockets just go
    try:
        wait_log(worker, LOST)
    finally:
        rabbit.start()
    assert core.add.apply_async((2, 2), queue=queue_name).get(timeout=30) == 4
    one_consumer_with_prefetch(rabbit, queue_name, 4)
    assert worker.log().count(LOST) == 1


def test_worker_detects_a_frozen_broker_and_resumes_when_it_thaws(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    broker_url: str,
    queue_name: str,
    rabbit: Any,
) -> None:
    worker = start_worker(
        "-Q", queue_name, "-c", "1", env={"AMQPTASKS_BROKER_URL": with_heartbeat(broker_url)}
    )
    assert core.add.apply_async((1, 1), queue=queue_name).get(timeout=20) == 2
    started = time.monotonic()
    rabbit.signal(signal.SIGSTOP)  # the process answers nothing, its sockets stay open
    try:
        detected = wait_log(worker, LOST, timeout=20) - started
    finally:
        rabbit.signal(signal.SIGCONT)
    assert detected < DETECTION_LIMIT, f"frozen broker noticed after {detected:.1f}s"
    wait_log(worker, RESTORED, timeout=40)
    assert core.add.apply_async((3, 3), queue=queue_name).get(timeout=30) == 6
    one_consumer_with_prefetch(rabbit, queue_name, 4)


# -- producers ------------------------------------------------------------------------------


def _depth(broker_url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


class Producer:
    """One scenario body for both producers: ``send`` runs ``apply_async`` or ``aapply_async``."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.app = App("itest-proxy", broker_url=url)
        self.task = self.app.task(name="tests.integration.apps.core.add")(_never_run)
        self.loop = asyncio.new_event_loop() if kind == "async" else None

    def send(self, queue: str, **options: Any) -> str:
        options = {"queue": queue, "ignore_result": True, **options}
        if self.loop is None:
            return self.task.apply_async((1, 1), **options).id
        return self.loop.run_until_complete(self.task.aapply_async((1, 1), **options)).id

    def close(self) -> None:
        if self.loop is None:
            self.app.close()
        else:
            self.loop.run_until_complete(self.app.aclose())
            self.loop.close()


def _never_run(x: int, y: int) -> int:
    return x + y


@pytest.fixture(params=["sync", "async"])
def producer(
    request: pytest.FixtureRequest,
    fault_proxy: FaultProxy,
    broker_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    url = fault_proxy.url(broker_url, heartbeat=HEARTBEAT)
    with monkeypatch.context() as patch:
        patch.setenv("AMQPTASKS_BROKER_URL", url)  # the environment wins over App(broker_url=)
        made = Producer(request.param, url)
    assert made.app.settings.broker.port == fault_proxy.port
    yield made
    made.close()


def test_producer_fails_fast_on_a_black_hole_then_reconnects(
    producer: Producer, fault_proxy: FaultProxy, broker_url: str, queue_name: str
) -> None:
    producer.send(queue_name)
    fault_proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(ConnectionLost):  # typed, and long before publish_timeout (15 s)
        producer.send(queue_name, retry=False)
    assert time.monotonic() - started < DETECTION_LIMIT
    fault_proxy.restore()
    producer.send(queue_name)  # the default retry policy covers the reconnect
    # The unconfirmed message may still arrive: the held bytes flow once the link is
    # back, as after a real network blip (ConnectionLost says "may have been sent").
    assert _depth(broker_url, queue_name) in (2, 3)


def test_producer_retries_across_a_reset_and_gives_up_when_its_budget_is_spent(
    producer: Producer, fault_proxy: FaultProxy, broker_url: str, queue_name: str
) -> None:
    producer.send(queue_name)
    fault_proxy.reset()
    started = time.monotonic()
    with pytest.raises((ConnectionLost, BrokerUnreachable)):
        producer.send(queue_name, retry_policy={"max_retries": 2, "interval_start": 0.2})
    assert time.monotonic() - started < 5  # each try fails at once, as the broker refuses

    restorer = threading.Timer(1.5, fault_proxy.restore)
    restorer.start()
    try:
        task_id = producer.send(
            queue_name,
            task_id="across-the-reset",
            retry_policy={"max_retries": 40, "interval_start": 0.25, "interval_step": 0.0},
        )
    finally:
        restorer.join()
    assert task_id == "across-the-reset"
    assert _depth(broker_url, queue_name) == 2


def test_worker_stops_promptly_while_disconnected(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    fault_proxy: FaultProxy,
    broker_url: str,
    queue_name: str,
) -> None:
    url = fault_proxy.url(broker_url, heartbeat=HEARTBEAT)
    worker = start_worker("-Q", queue_name, env={"AMQPTASKS_BROKER_URL": url})
    fault_proxy.reset()
    wait_log(worker, LOST)
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    assert time.monotonic() - started < 8


def test_producer_publishes_through_a_slow_link(
    producer: Producer, fault_proxy: FaultProxy, broker_url: str, queue_name: str
) -> None:
    producer.send(queue_name)
    fault_proxy.delay(0.3)
    started = time.monotonic()
    producer.send(queue_name)  # one round trip for the confirm: 0.3 s each way
    assert 0.55 < time.monotonic() - started < 5
    fault_proxy.restore()
    assert _depth(broker_url, queue_name) == 2


# -- the broker ends a consumer while the connection stays up -----------------------------------


def test_worker_declares_its_queue_again_when_it_is_deleted_while_consumed(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    rabbit: Any,
    amqp: Any,
) -> None:
    worker = start_worker("-Q", queue_name, "-c", "1")
    assert core.add.apply_async((1, 2), queue=queue_name).get(timeout=20) == 3
    amqp.queue_delete(queue_name)  # the broker cancels the worker's consumer
    amqp.queue_delete(f"{queue_name}.dlq")
    wait_log(worker, "the broker cancelled a consumer")
    wait_log(worker, "consuming again")
    declared_again_and_served(core, rabbit, amqp, queue_name)
    log = worker.log()
    assert LOST not in log  # the connection itself stayed up
    assert worker.proc.poll() is None
