"""Celery side of the benchmarks: the app its workers run, and client commands.

Worker: ``celery -A tests.bench.peer_celery:app worker -Q QUEUE -P POOL -c N``.
Broker: py-amqp (``pyamqp://``) from ``BENCH_CELERY_BROKER``; results: the ``rpc://``
backend; ``BENCH_CONFIRM=1`` turns on ``confirm_publish`` (the default in these
benchmarks: every figure is with publisher confirms unless a row says otherwise).
Everything else is Celery's default (notably: it acks a task *before* running it).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from celery import Celery
from celery.signals import worker_ready

from tests.bench import marks

app = Celery("bench", broker=os.environ.get("BENCH_CELERY_BROKER", "pyamqp://"))
app.conf.update(
    result_backend="rpc://",
    broker_transport_options={"confirm_publish": os.environ.get("BENCH_CONFIRM", "1") == "1"},
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True,
)


@app.task(name="bench.noop", ignore_result=True)
def noop(*_args: Any, **_kwargs: Any) -> None:
    marks.done()


@app.task(name="bench.echo")
def echo(value: Any, *_args: Any) -> Any:
    return value


@app.task(name="bench.delayed", ignore_result=True)
def delayed(run: str, eta: float) -> None:
    marks.late(run, eta)


@worker_ready.connect
def _ready(**_kwargs: Any) -> None:
    marks.ready("celery")


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
    """Publish ``n`` no-op tasks: mode seq | threads."""
    noop.apply_async((-1, marks.PAYLOAD), queue=queue)  # connect and declare first
    if mode == "seq":

        def body() -> None:
            for i in range(n):
                noop.apply_async((i, marks.PAYLOAD), queue=queue)

    elif mode == "threads":
        per = n // threads

        def run(offset: int) -> None:
            for i in range(offset, offset + per):
                noop.apply_async((i, marks.PAYLOAD), queue=queue)

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


def cmd_prepublish(n: int, queue: str, task: str = "bench.noop") -> Any:
    """Publish ``n`` no-op tasks from one thread (for drain and end to end)."""

    def body() -> None:
        for i in range(n):
            noop.apply_async((i, marks.PAYLOAD), queue=queue)

    return _timed(n, body)


def cmd_rpc_seq(n: int, queue: str, warmup: int = 50) -> Any:
    """``n`` sequential ``echo.apply_async(...).get()`` (rpc backend): ms each."""
    for i in range(warmup):
        echo.apply_async((i, marks.PAYLOAD), queue=queue).get(timeout=30)
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        value = echo.apply_async((i, marks.PAYLOAD), queue=queue).get(timeout=30)
        latencies.append((time.perf_counter() - started) * 1000)
        assert value == i, value
    return {"latencies_ms": latencies}


def cmd_delayed(n: int, queue: str, run: str, countdown: float) -> Any:
    """Send ``n`` tasks with ``countdown`` (Celery holds them in the worker until due)."""
    started = time.monotonic()
    for _ in range(n):
        delayed.apply_async((run, time.time() + countdown), queue=queue, countdown=countdown)
    return {"publish_s": time.monotonic() - started}
