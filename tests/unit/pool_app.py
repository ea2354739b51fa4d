"""An app whose tasks the pool unit tests run (imported by pool children: no broker needed)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from amqptasks import App, SoftTimeLimitExceeded

app = App("pooltest")


@app.task(bind=True)
def echo(self: Any, value: Any) -> dict[str, Any]:
    return {"value": value, "pid": os.getpid(), "task_id": self.request.id}


@app.task
def now() -> float:
    """When its body ran."""
    return time.time()


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


class Unpicklable(Exception):
    """Needs two arguments, so pickle cannot rebuild it from its args."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code


@app.task
def fail_unpicklable() -> None:
    raise Unpicklable(7, "odd")


@app.task
def unpicklable_result() -> Any:
    return lambda: None


@app.task
def naps(seconds: float) -> str:
    """Short naps: a thread sees an asynchronous exception between them."""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(0.01)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "slept"


@app.task
def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


@app.task
def exit_task() -> None:
    raise SystemExit(3)


@app.task
def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@app.task
async def coro(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"
