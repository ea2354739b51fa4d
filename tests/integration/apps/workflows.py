"""Tasks of the workflow tests (#15): arithmetic, a failing step, side effects in files."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

from amqptasks import App

app = App("iflow", default_queue=os.environ.get("WORKFLOW_QUEUE", "iflow"))


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def const(value: Any) -> Any:
    return value


@app.task
def boom(*args: Any) -> None:
    raise ValueError(f"boom {args!r}")


@app.task
def tsum(values: list[int]) -> int:
    return sum(values)


@app.task
def nap_echo(i: int, most: float, ledger: str) -> int:
    """Sleeps a random while, records that it ran, returns ``i``."""
    time.sleep(random.uniform(0, most))
    with open(ledger, "a") as handle:
        handle.write(f"{i}\n")
    return i


@app.task(max_retries=2, default_retry_delay=1, autoretry_for=(KeyError,))
def flaky(i: int, marker: str) -> int:
    """Fails (KeyError, retried) the first time it sees ``marker`` missing."""
    path = Path(marker)
    if not path.exists():
        path.write_text("seen")
        raise KeyError("first attempt fails")
    return i


@app.task(max_retries=1, default_retry_delay=1, autoretry_for=(KeyError,))
def always_flaky(i: int) -> int:
    raise KeyError(f"member {i} never works")


@app.task
def record(values: Any, ledger: str) -> int:
    """The side effect of a body or callback: one JSON line per call."""
    with open(ledger, "a") as handle:
        handle.write(json.dumps(values) + "\n")
    return len(values) if isinstance(values, list) else 1
