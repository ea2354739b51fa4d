"""Tasks used by the integration tests (the broker URL comes from AMQPTASKS_BROKER_URL)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from amqptasks import App, Reject, SoftTimeLimitExceeded, TimeLimitExceeded

app = App("itest")


class InventoryError(Exception):
    """A user-defined exception, rebuilt on the caller's side."""


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
async def async_add(x: int, y: int) -> int:
    await asyncio.sleep(0.001)
    return x + y


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task
def fail_custom(sku: str) -> None:
    raise InventoryError(f"out of stock: {sku}")


def _append(path: str, line: str) -> None:
    # O_APPEND writes of one short line are atomic between processes.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@app.task
def record(ledger: str, token: str) -> str:
    _append(ledger, token)
    return token


@app.task(ignore_result=True)
def touch(path: str) -> None:
    Path(path).write_text("done")


@app.task
def slow(ledger: str, token: str, seconds: float) -> str:
    _append(ledger, f"start {token}")
    time.sleep(seconds)
    _append(ledger, f"done {token}")
    return token


@app.task(acks_early=True)
def slow_early(ledger: str, token: str, seconds: float) -> str:
    _append(ledger, f"start {token}")
    time.sleep(seconds)
    _append(ledger, f"done {token}")
    return token


@app.task(bind=True)
def whoami(self: object) -> dict[str, object]:
    request = self.request  # type: ignore[attr-defined]
    return {
        "id": request.id,
        "queue": request.queue,
        "hostname": request.hostname,
        "retries": request.retries,
    }


@app.task
def spawn_child(x: int, queue: str) -> str:
    return add.apply_async((x, x), queue=queue).id


@app.task
def stamp(ledger: str, token: str) -> float:
    """Record when it ran (for ETA lateness)."""
    now = time.time()
    _append(ledger, f"{token} {now!r}")
    return now


@app.task(autoretry_for=(OSError,), max_retries=3, retry_backoff=1, retry_jitter=False)
def always_fails(ledger: str, token: str) -> None:
    _append(ledger, f"{token} {time.time()!r}")
    raise OSError(f"service down for {token}")


@app.task(bind=True, max_retries=6)
def flaky(self: Any, ledger: str, token: str, failures: int) -> int:
    retries: int = self.request.retries
    _append(ledger, f"{token} {retries}")
    if retries < failures:
        self.retry(exc=ConnectionError(f"attempt {retries} failed"), countdown=1)
    return retries


@app.task(max_retries=0)
def fails_while(flag: str, ledger: str) -> str:
    if os.path.exists(flag):
        raise RuntimeError(f"{flag} still exists")
    _append(ledger, "ran")
    return "ran"


@app.task
def reject_it(reason: str) -> None:
    raise Reject(reason)


@app.task
def die(ledger: str) -> None:
    """Kill the worker process mid-task, as the OOM killer would."""
    _append(ledger, "started")
    os.kill(os.getpid(), signal.SIGKILL)


# -- pools and limits (issue #5) ---------------------------------------------------------------


@app.task
def getpid() -> int:
    return os.getpid()


@app.task
async def async_getpid() -> int:
    await asyncio.sleep(0)
    return os.getpid()


@app.task
def spawn_record(ledger: str, queue: str) -> str:
    """Send a task from inside a task (in a pool child: through the child's own connection)."""
    return record.apply_async((ledger, "nested"), queue=queue, ignore_result=True).id


@app.task
def slow_pid(ledger: str, token: str, seconds: float) -> str:
    """Record the pid of the process running it, then sleep."""
    _append(ledger, f"start {token} {os.getpid()}")
    time.sleep(seconds)
    _append(ledger, f"done {token} {os.getpid()}")
    return token


@app.task
def until_soft_limit(ledger: str, seconds: float) -> str:
    """Wait in short naps (so that a thread sees its asynchronous exception) and clean up."""
    _append(ledger, f"start {os.getpid()}")
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(0.02)
    except SoftTimeLimitExceeded:
        _append(ledger, "soft limit")
        return "cleaned up"
    return "not interrupted"


@app.task(soft_time_limit=0.5, time_limit=30)
def task_level_soft_limit(ledger: str) -> str:
    return until_soft_limit(ledger, 10.0)


@app.task
def sleep_through(ledger: str, seconds: float) -> str:
    """One long C call (time.sleep): threads cannot interrupt it; processes can."""
    _append(ledger, f"start {os.getpid()}")
    time.sleep(seconds)
    _append(ledger, "finished")
    return "finished"


@app.task(autoretry_for=(TimeLimitExceeded,), max_retries=1, default_retry_delay=1, time_limit=0.5)
def always_too_slow(ledger: str) -> None:
    _append(ledger, f"start {os.getpid()}")
    time.sleep(5)


@app.task
async def async_until_soft_limit(ledger: str) -> str:
    try:
        await asyncio.sleep(30)
    except SoftTimeLimitExceeded:
        _append(ledger, "soft limit")
        await asyncio.sleep(0.01)  # clean-up may await
        return "cleaned up"
    return "not interrupted"


@app.task
async def async_until_cancelled(ledger: str) -> str:
    try:
        await asyncio.sleep(30)
    finally:
        _append(ledger, "cancelled")
    return "not cancelled"


@app.task
def wait_for_flag(flag: str, ledger: str, token: str) -> str:
    """Block while ``flag`` exists (holds a concurrency slot; its message stays unacked)."""
    _append(ledger, f"start {token}")
    while os.path.exists(flag):
        time.sleep(0.05)
    return token


@app.task(rate_limit="5/s")
def rate_limited(ledger: str, token: str) -> str:
    _append(ledger, f"{token} {time.time()!r}")
    return token


_hoard: list[bytes] = []


@app.task
def hoard(megabytes: int) -> int:
    """Keep ``megabytes`` MB alive in this process (for max-memory-per-child)."""
    _hoard.append(os.urandom(megabytes * 1024 * 1024))
    return os.getpid()


@app.task
def burn_cpu(seconds: float) -> dict[str, float]:
    """Spin the CPU in pure Python for ``seconds`` (holds this process's GIL throughout)."""
    started = time.monotonic()
    spins = 0
    while time.monotonic() - started < seconds:
        spins += 1
    return {"pid": os.getpid(), "spins": spins}


@app.task(bind=True, ignore_result=True)
def ledger_effect(self: Any, db_path: str, token: str) -> None:
    """Record every attempt, and commit the side effect once per task id (idempotent)."""
    import sqlite3

    task_id: str = self.request.id
    connection = sqlite3.connect(db_path, timeout=60)
    try:
        with connection:
            connection.execute(
                "INSERT INTO attempts(task_id, token, pid) VALUES (?, ?, ?)",
                (task_id, token, os.getpid()),
            )
            connection.execute(
                "INSERT OR IGNORE INTO effects(task_id, token) VALUES (?, ?)", (task_id, token)
            )
    finally:
        connection.close()


# -- several worker processes (--workers) ------------------------------------------------------


@app.task(bind=True)
def pid_and_hostname(self: Any) -> dict[str, object]:
    """The worker process that ran it: its pid and node name."""
    return {"pid": os.getpid(), "hostname": self.request.hostname}
