"""Workflow figures (#15), amqptasks beside Celery on one private node; not a test.

    python -m tests.bench.canvas [--group 10000] [--chain 100] [--chord 1000]

Starts a private RabbitMQ node (or uses ``AMQPTASKS_TEST_URL``), one ``amqptasks
worker`` (threads, -c 4) and one Celery worker (``-P threads -c 4``, rpc backend),
then times, from the send to ``.get()`` returning: a group of no-op tasks, a
chain of additions, and a chord (until its body ran). Celery's chord needs a
result store that can join; on the rpc backend it cannot run, which the table says.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

from amqptasks.testing import RabbitNode

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@contextlib.contextmanager
def _broker() -> Iterator[str]:
    given = os.environ.get("AMQPTASKS_TEST_URL")
    if given:
        yield given
        return
    with RabbitNode() as node:
        yield node.amqp_url


def _spawn(
    command: list[str], env: dict[str, str], ready: str, log: str
) -> subprocess.Popen[bytes]:
    handle = open(log, "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with open(log, errors="replace") as text:
            if ready in text.read():
                return proc
        if proc.poll() is not None:
            raise SystemExit(f"{command[2:5]} exited; see {log}")
        time.sleep(0.2)
    raise SystemExit(f"{command[2:5]} not ready; see {log}")


def _timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", type=int, default=10_000)
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--chord", type=int, default=1_000)
    opts = parser.parse_args()
    with _broker() as url:
        queue_a, queue_c = (
            f"bench-flow-{uuid.uuid4().hex[:6]}",
            f"bench-celery-{uuid.uuid4().hex[:6]}",
        )
        env = {**os.environ, "AMQPTASKS_BROKER_URL": url, "WORKFLOW_QUEUE": queue_a}
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        os.environ.update(AMQPTASKS_BROKER_URL=url, WORKFLOW_QUEUE=queue_a)
        workers = [
            _spawn(
                [
                    sys.executable,
                    "-m",
                    "amqptasks",
                    "worker",
                    "-A",
                    "tests.integration.apps.workflows:app",
                    "-Q",
                    queue_a,
                    "-c",
                    "4",
                    "-l",
                    "info",
                ],
                env,
                "worker ready",
                "/tmp/bench-canvas-amqptasks.log",
            ),
            _spawn(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "tests.integration.celery_apps.celery_app",
                    "worker",
                    "-P",
                    "threads",
                    "-c",
                    "4",
                    "-Q",
                    queue_c,
                    "-l",
                    "warning",
                    "--without-heartbeat",
                    "--without-gossip",
                    "--without-mingle",
                ],
                env,
                "",
                "/tmp/bench-canvas-celery.log",
            ),
        ]
        time.sleep(5)  # Celery logs nothing at warning level when ready
        try:
            _report(opts, queue_c)
        finally:
            for proc in workers:
                proc.send_signal(signal.SIGTERM)
            for proc in workers:
                proc.wait(30)


def _report(opts: argparse.Namespace, queue_c: str) -> None:
    import celery

    from amqptasks import chain, chord, group
    from tests.integration.apps import workflows as flows
    from tests.integration.celery_apps.celery_app import app as capp

    n_group, n_chain, n_chord = opts.group, opts.chain, opts.chord
    flows.app.results._maxsize = max(flows.app.results._maxsize, 4 * n_group)
    # Warm both sides (connections, queue declarations).
    group(flows.add.s(1, 1) for _ in range(10)).delay().get(timeout=60)
    capp.signature("interop.add", (1, 1), queue=queue_c).apply_async().get(timeout=60)

    rows = []
    ours = _timed(lambda: group(flows.add.s(i, 0) for i in range(n_group)).delay().get(timeout=600))
    theirs = _timed(
        lambda: (
            celery.group(
                capp.signature("interop.add", (i, 0), queue=queue_c) for i in range(n_group)
            )
            .apply_async()
            .get(timeout=600)
        )
    )
    rows.append((f"group of {n_group:,} no-op tasks, send to .get()", ours, f"{theirs:.2f} s"))
    ours = _timed(
        lambda: (
            chain(flows.add.s(0, 1), *(flows.add.s(1) for _ in range(n_chain - 1)))
            .delay()
            .get(timeout=600)
        )
    )
    theirs = _timed(
        lambda: (
            celery.chain(
                capp.signature("interop.add", (0, 1), queue=queue_c),
                *(capp.signature("interop.add", (1,), queue=queue_c) for _ in range(n_chain - 1)),
            )
            .apply_async()
            .get(timeout=600)
        )
    )
    rows.append((f"chain of {n_chain}, send to .get()", ours, f"{theirs:.2f} s"))
    ours = _timed(
        lambda: (
            chord((flows.add.s(i, 0) for i in range(n_chord)), flows.tsum.s())
            .delay()
            .get(timeout=600)
        )
    )
    rows.append(
        (
            f"chord of {n_chord:,}, send to the body's .get()",
            ours,
            "cannot run: a chord needs a joining result store; the rpc backend has none",
        )
    )
    print("\n| workflow | amqptasks | Celery 5 (rpc backend) |\n|---|---|---|")
    for what, mine, other in rows:
        print(f"| {what} | {mine:.2f} s | {other} |")


if __name__ == "__main__":
    main()
