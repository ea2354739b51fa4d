"""Tasks used by the integration tests (the broker URL comes from AMQPTASKS_BROKER_URL)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from amqptasks import App, Reject

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
