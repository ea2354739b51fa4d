"""Core figures: publishing rate (1 and 8 threads) and worker drain rate.

Run: ``python -m tests.bench.bench_core [--n 10000] [--repeat 3]`` (starts its own node).
Each figure is the median of ``--repeat`` runs, printed as tasks/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pika
import pika.exceptions

from amqptasks.testing import RabbitNode

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = Path(__file__).resolve().parents[2]


class _Probe:
    """One connection for polling a queue's depth (a new one per poll costs CPU)."""

    def __init__(self, url: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()

    def ready(self, queue: str) -> int:
        return int(self.channel.queue_declare(queue, passive=True).method.message_count)

    def close(self) -> None:
        self.connection.close()


def _purge(url: str, queue: str) -> None:
    # Purge rather than delete: the producer's "already declared" cache stays true.
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.queue_declare(queue, passive=True)
        channel.queue_purge(queue)
    except pika.exceptions.ChannelClosedByBroker:
        pass  # not declared yet
    finally:
        if connection.is_open:
            connection.close()


def publish_sequential(n: int, queue: str) -> float:
    from tests.bench.noop_app import noop

    started = time.perf_counter()
    for _ in range(n):
        noop.apply_async(queue=queue)
    return n / (time.perf_counter() - started)


def publish_batch(n: int, queue: str) -> float:
    from tests.bench.noop_app import app, noop

    started = time.perf_counter()
    with app.batch():
        for _ in range(n):
            noop.apply_async(queue=queue)
    return n / (time.perf_counter() - started)


def publish_threads(n: int, queue: str, threads: int = 8) -> float:
    from tests.bench.noop_app import noop

    per_thread = n // threads

    def run() -> None:
        for _ in range(per_thread):
            noop.apply_async(queue=queue)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return per_thread * threads / (time.perf_counter() - started)


def drain(n: int, queue: str, url: str, pool: str, concurrency: int) -> float:
    publish_batch(n, queue)
    env = {
        **os.environ,
        "AMQPTASKS_BROKER_URL": url,
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "amqptasks",
                "worker",
                "-A",
                "tests.bench.noop_app:app",
                "-Q",
                queue,
                "-P",
                pool,
                "-c",
                str(concurrency),
                "-l",
                "info",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            while "worker ready" not in Path(log.name).read_text():
                if proc.poll() is not None:
                    raise RuntimeError(Path(log.name).read_text())
                time.sleep(0.01)
            probe = _Probe(url)
            started = time.perf_counter()
            while probe.ready(queue) > 0:
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            probe.close()
        finally:
            proc.terminate()
            proc.wait(30)
    return n / elapsed


def median_of(repeat: int, run: Callable[[], float]) -> tuple[float, list[float]]:
    figures = [run() for _ in range(repeat)]
    return statistics.median(figures), figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amqptasks-bench-") as base:
        os.chmod(base, 0o755)
        node = RabbitNode(base).start()
        try:
            url = node.amqp_url
            os.environ["AMQPTASKS_BROKER_URL"] = url
            queue = "bench-core"
            rows: list[tuple[str, float, list[float]]] = []

            def measure(label: str, run: Callable[[], float]) -> None:
                def once() -> float:
                    _purge(url, queue)
                    return run()

                median, figures = median_of(args.repeat, once)
                rows.append((label, median, figures))
                print(
                    f"{label:<48} {median:>10,.0f} tasks/s   runs: "
                    + ", ".join(f"{f:,.0f}" for f in figures),
                    flush=True,
                )

            measure(
                f"publish {args.n:,} delay() 1 thread (confirm each)",
                lambda: publish_sequential(args.n, queue),
            )
            measure(
                f"publish {args.n:,} 1 thread, app.batch()", lambda: publish_batch(args.n, queue)
            )
            measure(
                f"publish {args.n:,} delay() from 8 threads", lambda: publish_threads(args.n, queue)
            )
            for pool, concurrency in (("threads", 4), ("threads", 8), ("asyncio", 8)):
                measure(
                    f"drain {args.n:,} no-op, pool {pool} -c {concurrency}",
                    lambda p=pool, c=concurrency: drain(args.n, queue, url, p, c),
                )
            _purge(url, queue)
        finally:
            from tests.bench.noop_app import app

            app.close()
            node.stop()


if __name__ == "__main__":
    main()
