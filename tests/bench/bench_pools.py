"""No-op drain rate per worker pool at -c 2 and -c 8, and the worker's resident memory.

Run: ``python -m tests.bench.bench_pools [--n 10000] [--repeat 3]`` (starts its own node).
Each figure is the median of ``--repeat`` runs. The queue is filled first (batched,
confirmed publishes), then a worker is started; the clock runs from its ``worker
ready`` line until the queue holds no ready message. Memory is the resident set of
the worker process (plus its pool children, for ``processes``) when it is ready and
after it drained the queue.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pika
import pika.exceptions

from amqptasks.testing import RabbitNode

REPO = Path(__file__).resolve().parents[2]
QUEUE = "bench-pools"


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_rss_kib(pid: int) -> int:
    """Resident KiB of ``pid`` and its pool children (not multiprocessing's tracker)."""
    total = _rss_kib(pid)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            total += _rss_kib(int(entry))
    return total


def _ready(channel: pika.adapters.blocking_connection.BlockingChannel) -> int:
    return int(channel.queue_declare(QUEUE, passive=True).method.message_count)


def _purge(url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.queue_declare(QUEUE, passive=True)
        channel.queue_purge(QUEUE)
    except pika.exceptions.ChannelClosedByBroker:
        pass  # not declared yet
    finally:
        if connection.is_open:
            connection.close()


def _fill(n: int) -> None:
    from tests.bench.noop_app import app, noop

    with app.batch():
        for _ in range(n):
            noop.apply_async(queue=QUEUE)


def drain(n: int, url: str, pool: str, concurrency: int) -> tuple[float, int, int]:
    """Tasks/s, and the worker's resident KiB when ready and after the drain."""
    _purge(url)
    _fill(n)
    env = {
        **os.environ,
        "AMQPTASKS_BROKER_URL": url,
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    command = [sys.executable, "-m", "amqptasks", "worker", "-A", "tests.bench.noop_app:app"]
    command += ["-Q", QUEUE, "-P", pool, "-l", "info"]
    if pool != "solo":
        command += ["-c", str(concurrency)]
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        connection = pika.BlockingConnection(pika.URLParameters(url))
        channel = connection.channel()
        try:
            while "worker ready" not in Path(log.name).read_text():
                if proc.poll() is not None:
                    raise RuntimeError(Path(log.name).read_text())
                time.sleep(0.01)
            idle = _tree_rss_kib(proc.pid)
            started = time.perf_counter()
            while _ready(channel) > 0:
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            time.sleep(0.5)  # the last prefetched ones
            after = _tree_rss_kib(proc.pid)
        finally:
            connection.close()
            proc.terminate()
            proc.wait(30)
    return n / elapsed, idle, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pools", default="threads,processes,asyncio,solo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amqptasks-bench-") as base:
        os.chmod(base, 0o755)
        node = RabbitNode(base).start()
        try:
            url = node.amqp_url
            os.environ["AMQPTASKS_BROKER_URL"] = url
            header = f"{'pool':<10} {'-c':>3} {'tasks/s (median)':>17}"
            print(header + "  runs; RSS KiB ready -> drained")
            for pool in args.pools.split(","):
                for concurrency in (1,) if pool == "solo" else (2, 8):
                    runs = [drain(args.n, url, pool, concurrency) for _ in range(args.repeat)]
                    rates = [r[0] for r in runs]
                    print(
                        f"{pool:<10} {concurrency:>3} {statistics.median(rates):>17,.0f}  "
                        + ", ".join(f"{r:,.0f}" for r in rates)
                        + f"; {runs[-1][1]:,} -> {runs[-1][2]:,}",
                        flush=True,
                    )
            _purge(url)
        finally:
            from tests.bench.noop_app import app

            app.close()
            node.stop()


if __name__ == "__main__":
    main()
