"""Dramatiq side of the benchmarks: the broker its workers use, and client commands.

Worker: ``dramatiq tests.bench.peer_dramatiq:broker -p PROCESSES -t THREADS -Q QUEUE``.
The actors' queue is ``BENCH_QUEUE`` (read at import: every run starts fresh
processes). ``BENCH_CONFIRM=1`` (default) sets ``confirm_delivery=True``.
Dramatiq has no result backend on RabbitMQ (its Results middleware needs Redis
or Memcached), so there is no RPC figure for it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from tests.bench import marks

QUEUE = os.environ.get("BENCH_QUEUE", "bench")

broker = RabbitmqBroker(
    url=os.environ.get("BENCH_DRAMATIQ_BROKER", "amqp://guest:guest@127.0.0.1:5672/%2F"),
    confirm_delivery=os.environ.get("BENCH_CONFIRM", "1") == "1",
)


class _Ready(dramatiq.Middleware):
    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        marks.ready("dramatiq")


broker.add_middleware(_Ready())
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench_noop", queue_name=QUEUE, max_retries=0)
def noop(*_args: Any, **_kwargs: Any) -> None:
    marks.done()


@dramatiq.actor(actor_name="bench_delayed", queue_name=QUEUE, max_retries=0)
def delayed(run: str, eta: float) -> None:
    marks.late(run, eta)


def _timed(n: int, body: Any) -> dict[str, Any]:
    cpu = time.process_time()
    started = time.monotonic()
    body()
    elapsed = time.monotonic() - started
    return {
        "rate": n / elapsed,
        "elapsed": elapsed,
        "t_start": started,
        "cpu_us_per_msg": (time.process_time() - cpu) / n * 1e6,
    }


def cmd_enqueue(n: int, queue: str, mode: str, threads: int = 8) -> Any:
    """Publish ``n`` no-op messages: mode seq | threads (each thread has its connection)."""
    assert queue == QUEUE, (queue, QUEUE)
    try:
        noop.send(-1, marks.PAYLOAD)  # connect and declare first
        if mode == "seq":

            def body() -> None:
                for i in range(n):
                    noop.send(i, marks.PAYLOAD)

        elif mode == "threads":
            per = n // threads

            def run(offset: int) -> None:
                for i in range(offset, offset + per):
                    noop.send(i, marks.PAYLOAD)

            def body() -> None:
                pool = [threading.Thread(target=run, args=(t * per,)) for t in range(threads)]
                for thread in pool:
                    thread.start()
                for thread in pool:
                    thread.join()

            n = per * threads
        else:
            raise ValueError(f"unknown mode {mode!r}")
        return _timed(n, body)
    finally:
        broker.close()


def cmd_prepublish(n: int, queue: str, task: str = "bench_noop") -> Any:
    """Publish ``n`` no-op messages from one thread (for drain and end to end)."""
    assert queue == QUEUE, (queue, QUEUE)

    def body() -> None:
        for i in range(n):
            noop.send(i, marks.PAYLOAD)

    try:
        return _timed(n, body)
    finally:
        broker.close()


def cmd_delayed(n: int, queue: str, run: str, countdown: float) -> Any:
    """Send ``n`` messages with ``delay`` (they wait in the ``.DQ`` queue / worker memory)."""
    assert queue == QUEUE, (queue, QUEUE)
    started = time.monotonic()
    try:
        for _ in range(n):
            delayed.send_with_options(
                args=(run, time.time() + countdown), delay=int(countdown * 1000)
            )
        return {"publish_s": time.monotonic() - started}
    finally:
        broker.close()
