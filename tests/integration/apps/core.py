"""Tasks used by the integration tests (the broker URL comes from AMQPTASKS_BROKER_URL)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from amqptasks import App

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
    return {"id": request.id, "queue": request.queue, "hostname": request.hostname,
            "retries": request.retries}


@app.task
def spawn_child(x: int, queue: str) -> str:
    return add.apply_async((x, x), queue=queue).id
