"""amqptasks side of the benchmarks: the app its workers run, and client commands.

Worker: ``python -m amqptasks worker -A tests.bench.peer_amqptasks:app -Q QUEUE ...``
(``:async_app`` for ``-P asyncio``)
(broker URL from ``AMQPTASKS_BROKER_URL``); the ``--workers 2`` drain variants run
the same app in two worker processes under a supervisor, and every process records
its tasks in the same counter file (one ``O_APPEND`` write per task). Clients run through
``python -m tests.bench.client amqptasks COMMAND JSON``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from amqptasks import App
from tests.bench import marks

app = App("bench")
#: The ``-P asyncio`` variant's app: the same tasks and one ``async def`` task. Kept
#: apart because a threads-pool worker whose app has ``async def`` tasks gives every
#: task a slot on the loop (so that ``-c`` counts them all together), where an app of
#: plain functions, like most Celery apps, lets the pool queue calls ahead.
async_app = App("bench-async")


@app.task(name="bench.noop", ignore_result=True)
def noop(*_args: Any, **_kwargs: Any) -> None:
    marks.done()


@async_app.task(name="bench.anoop", ignore_result=True)
async def anoop(*_args: Any, **_kwargs: Any) -> None:
    marks.done()


@app.task(name="bench.echo")
def echo(value: Any, *_args: Any) -> Any:
    return value


@app.task(name="bench.delayed", ignore_result=True)
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


def cmd_enqueue(n: int, queue: str, mode: str, threads: int = 8, concurrency: int = 64) -> Any:
    """Publish ``n`` no-op tasks with confirms: mode seq | batch | threads | async."""
    noop.apply_async((-1, marks.PAYLOAD), queue=queue)  # connect and declare first
    try:
        if mode == "seq":

            def body() -> None:
                for i in range(n):
                    noop.apply_async((i, marks.PAYLOAD), queue=queue)

        elif mode == "batch":

            def body() -> None:
                with app.batch():
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
        elif mode == "async":
            return asyncio.run(_enqueue_async(n, queue, concurrency))
        else:
            raise ValueError(f"unknown mode {mode!r}")
        return _timed(n, body)
    finally:
        app.close()


async def _enqueue_async(n: int, queue: str, concurrency: int) -> dict[str, Any]:
    await noop.aapply_async((-1, marks.PAYLOAD), queue=queue)
    counter = iter(range(n))

    async def lane() -> None:
        for i in counter:
            await noop.aapply_async((i, marks.PAYLOAD), queue=queue)

    cpu = time.process_time()
    started = time.monotonic()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    await app.aclose()
    return {
        "rate": n / elapsed,
        "elapsed": elapsed,
        "t_start": started,
        "cpu_us_per_msg": (time.process_time() - cpu) / n * 1e6,
    }


def cmd_prepublish(n: int, queue: str, task: str = "bench.noop") -> Any:
    """Publish ``n`` tasks as fast as possible (``app.batch()``), for drain and e2e."""

    def body() -> None:
        with app.batch():
            for i in range(n):
                app.send_task(task, (i, marks.PAYLOAD), queue=queue, ignore_result=True)

    try:
        return _timed(n, body)
    finally:
        app.close()


def cmd_rpc_seq(n: int, queue: str, warmup: int = 50) -> Any:
    """``n`` sequential ``echo.apply_async(...).get()``: latency of each, in ms."""
    try:
        for i in range(warmup):
            echo.apply_async((i, marks.PAYLOAD), queue=queue).get(timeout=30)
        latencies = []
        for i in range(n):
            started = time.perf_counter()
            value = echo.apply_async((i, marks.PAYLOAD), queue=queue).get(timeout=30)
            latencies.append((time.perf_counter() - started) * 1000)
            assert value == i, value
        return {"latencies_ms": latencies}
    finally:
        app.close()


def cmd_rpc_async(n: int, queue: str, warmup: int = 50) -> Any:
    """``n`` concurrent ``await (await echo.aapply_async(...)).aget()``: calls/s."""

    async def call(i: int) -> Any:
        result = await echo.aapply_async((i, marks.PAYLOAD), queue=queue)
        return await result.aget(timeout=60)

    async def main() -> dict[str, Any]:
        await asyncio.gather(*(call(i) for i in range(warmup)))
        started = time.monotonic()
        values = await asyncio.gather(*(call(i) for i in range(n)))
        elapsed = time.monotonic() - started
        assert values == list(range(n))
        await app.aclose()
        return {"rate": n / elapsed, "elapsed": elapsed}

    return asyncio.run(main())


def cmd_delayed(n: int, queue: str, run: str, countdown: float) -> Any:
    """Send ``n`` tasks with ``countdown``; each records its lateness when it runs.

    Returns ``{"unsupported": ...}`` while ``apply_async`` refuses ``countdown``.
    """
    try:
        try:
            delayed.apply_async(  # type: ignore[call-arg]
                ("warmup", time.time() + countdown), queue=queue, countdown=countdown
            )
        except TypeError as exc:
            return {"unsupported": str(exc)}
        started = time.monotonic()
        with app.batch():
            for _ in range(n):
                delayed.apply_async(  # type: ignore[call-arg]
                    (run, time.time() + countdown), queue=queue, countdown=countdown
                )
        return {"publish_s": time.monotonic() - started}
    finally:
        app.close()
