"""Outbox benchmark (#16): rows committed -> published per second, beside ``delay_on_commit``.

    python -m tests.bench.outbox [--n 2000] [--repeat 3] [--batch 500] [--interval 0.5]

Starts a private RabbitMQ node and a Django project (``tests.bench.outbox_project``)
on a temporary SQLite file with the outbox migrated, then runs, interleaved
``--repeat`` times, N transactions that each insert one data row and enqueue one
no-op task:

- **on_commit**: ``apply_async_on_commit`` (``delay_on_commit`` with a queue): the
  publish runs after the commit, in the writer's thread, and waits for its
  confirm. Rate = N / (first transaction's start -> last confirm).
- **outbox**: ``outbox.enqueue`` in the transaction; one ``amqptasks outbox relay``
  subprocess (started and ready before the clock starts) publishes with confirms
  and deletes the rows. Rate = N / (first transaction's start -> outbox empty);
  lag = last commit -> outbox empty.

Each run sends to a fresh queue that nobody consumes; its ``message_count``
(passive declare) must be N: nothing lost, nothing published twice. Not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pika

from amqptasks.testing import RabbitNode

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROJECT = "tests.bench.outbox_project"


@dataclass
class Run:
    """One run's figures (seconds)."""

    rate: float  # rows committed -> published (confirmed; for the outbox also deleted) per s
    transaction_ms: float  # mean time of one transaction, begin -> committed
    request_ms: float  # mean time the writer's thread spent per call (on_commit: + publish)
    lag: float  # last commit -> outbox empty (outbox only)
    queued: int  # messages in the run's queue afterwards


def _queued(url: str, queue: str) -> int:
    """Ready messages in ``queue`` (passive declare), then delete it."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        count = int(channel.queue_declare(queue, passive=True).method.message_count)
        channel.queue_delete(queue)
        return count
    finally:
        connection.close()


def _insert(cursor: Any, n: int) -> None:
    cursor.execute("INSERT INTO bench_order (n, created) VALUES (%s, %s)", [n, time.time()])


def run_on_commit(project: Any, url: str, n: int) -> Run:
    from django.db import connection, transaction

    queue = f"bench-oncommit-{uuid.uuid4().hex[:6]}"
    committed: list[float] = []
    transaction_time = 0.0
    start = time.perf_counter()
    for index in range(n):
        began = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            _insert(cursor, index)
            # Callbacks run in order: this one marks the commit, the next publishes.
            transaction.on_commit(lambda: committed.append(time.perf_counter()))
            project.noop.apply_async_on_commit((index,), queue=queue)
        transaction_time += committed[-1] - began
    elapsed = time.perf_counter() - start
    return Run(
        rate=n / elapsed,
        transaction_ms=1000 * transaction_time / n,
        request_ms=1000 * elapsed / n,
        lag=0.0,
        queued=_queued(url, queue),
    )


def _relay(env: dict[str, str], log: str, batch: int, interval: float) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "amqptasks", "outbox", "relay", "-A", f"{PROJECT}:app"]
    command += ["--batch", str(batch), "--interval", str(interval)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(log, errors="replace") as text:
            if "outbox relay ready" in text.read():
                return proc
        if proc.poll() is not None:
            raise SystemExit(f"the relay exited; see {log}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the relay did not start; see {log}")


def run_outbox(
    project: Any, url: str, n: int, env: dict[str, str], logs: str, batch: int, interval: float
) -> Run:
    from django.db import connection, transaction

    from amqptasks.contrib.django import outbox
    from amqptasks.contrib.django.outbox.models import OutboxMessage

    queue = f"bench-outbox-{uuid.uuid4().hex[:6]}"
    log = os.path.join(logs, f"relay-{queue}.log")
    relay = _relay(env, log, batch, interval)
    try:
        start = time.perf_counter()
        for index in range(n):
            with transaction.atomic(), connection.cursor() as cursor:
                _insert(cursor, index)
                outbox.enqueue(project.noop, (index,), queue=queue)
        last_commit = time.perf_counter()
        while OutboxMessage.objects.exists():
            time.sleep(0.005)
        empty = time.perf_counter()
    finally:
        relay.send_signal(signal.SIGTERM)
        if relay.wait(30) != 0:
            raise SystemExit(f"the relay exited with {relay.returncode}; see {log}")
    return Run(
        rate=n / (empty - start),
        transaction_ms=1000 * (last_commit - start) / n,
        request_ms=1000 * (last_commit - start) / n,
        lag=empty - last_commit,
        queued=_queued(url, queue),
    )


def _cell(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def report(results: dict[str, list[Run]], n: int, command: str) -> str:
    lines = [
        f"N = {n} transactions per run, {len(results['outbox'])} runs each, interleaved; "
        "median (min-max). Each transaction inserts one data row and enqueues one task.",
        "",
        "| way | committed → published /s | transaction (ms) | writer's time per call (ms) "
        "| last commit → outbox empty (s) | messages in queue |",
        "|---|---|---|---|---|---|",
    ]
    names = {"on_commit": "`delay_on_commit`", "outbox": "outbox + 1 relay"}
    for key, runs in results.items():
        counts = sorted({run.queued for run in runs})
        lag = _cell([run.lag for run in runs], ".2f") if key == "outbox" else "-"
        lines.append(
            f"| {names[key]} | {_cell([run.rate for run in runs], '.0f')} "
            f"| {_cell([run.transaction_ms for run in runs], '.2f')} "
            f"| {_cell([run.request_ms for run in runs], '.2f')} | {lag} "
            f"| {'/'.join(map(str, counts))} of {n} each |"
        )
    import django

    lines += [
        "",
        f"`{command}` — {os.cpu_count()} cores (shared), Python {platform.python_version()}, "
        f"Django {django.get_version()}, SQLite file, RabbitMQ node of `amqptasks.testing`.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500, help="the relay's --batch")
    parser.add_argument("--interval", type=float, default=0.5, help="the relay's --interval")
    opts = parser.parse_args()
    command = "python -m tests.bench.outbox " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="amqptasks-bench-") as base:
        os.chmod(base, 0o755)
        node = RabbitNode(base).start()
        project: Any = None
        try:
            os.environ.update(
                AMQPTASKS_BROKER_URL=node.amqp_url,
                BENCH_OUTBOX_DB=os.path.join(base, "db.sqlite3"),
                DJANGO_SETTINGS_MODULE=PROJECT,
            )
            import django
            from django.core.management import call_command
            from django.db import connection

            django.setup()
            call_command("migrate", verbosity=0)
            with connection.cursor() as cursor:
                cursor.execute(
                    "CREATE TABLE bench_order (id INTEGER PRIMARY KEY, n INTEGER, created REAL)"
                )
            from tests.bench import outbox_project as project

            env = dict(os.environ)
            env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
            results: dict[str, list[Run]] = {"on_commit": [], "outbox": []}
            for number in range(1, opts.repeat + 1):
                for key in results:
                    if key == "on_commit":
                        run = run_on_commit(project, node.amqp_url, opts.n)
                    else:
                        run = run_outbox(
                            project, node.amqp_url, opts.n, env, base, opts.batch, opts.interval
                        )
                    results[key].append(run)
                    check = "ok" if run.queued == opts.n else "MISMATCH"
                    print(
                        f"run {number} {key}: {run.rate:.0f}/s, "
                        f"transaction {run.transaction_ms:.2f} ms, "
                        f"per call {run.request_ms:.2f} ms, lag {run.lag:.2f} s, "
                        f"{run.queued}/{opts.n} messages in the queue ({check})",
                        flush=True,
                    )
            print("\n" + report(results, opts.n, command))
            if any(run.queued != opts.n for runs in results.values() for run in runs):
                raise SystemExit("a queue did not hold exactly N messages: lost or duplicated")
        finally:
            if project is not None:
                project.app.close()
            node.stop()


if __name__ == "__main__":
    main()
