"""An amqptasks app whose tasks have the same names as ``celery_app``'s.

The broker URL comes from ``AMQPTASKS_BROKER_URL``; the result serializer of a
worker from ``AMQPTASKS_RESULT_SERIALIZER``.
"""

from __future__ import annotations

import time
from typing import Any

from amqptasks import App
from tests.integration.celery_apps.common import Inventory, write_ledger

app = App("interop")


@app.task(name="interop.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="interop.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="interop.fail_nested")
def fail_nested(sku: str) -> None:
    raise Inventory.OutOfStock(f"out of stock: {sku}")


@app.task(name="interop.info", bind=True)
def info(self: Any, *args: Any, ledger: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """What this worker knows about the call; also written to ``ledger`` when given."""
    request = self.request
    headers = request.headers
    limit = headers.get("timelimit")
    report = {
        "side": "amqptasks",
        "id": request.id,
        "task": request.task,
        "root_id": request.root_id,
        "parent_id": request.parent_id,
        "group": request.group,
        "retries": request.retries,
        "argsrepr": headers.get("argsrepr"),
        "kwargsrepr": headers.get("kwargsrepr"),
        "expires": request.expires,
        "eta": request.eta,
        "origin": request.origin,
        "timelimit": list(limit) if limit else None,
        "priority": None,  # amqptasks' request does not carry the message priority
        "tenant": headers.get("x-tenant"),
        "args": list(args),
        "arg_types": [type(arg).__name__ for arg in args],
        "kwargs": kwargs,
    }
    if ledger:
        write_ledger(ledger, report)
    return report


@app.task(name="interop.spawn")
def spawn(target_queue: str, ledger: str, serializer: str = "json") -> str:
    """Send ``interop.info`` to ``target_queue`` from inside this task; return the child's id."""
    child = app.send_task(
        "interop.info",
        args=("child",),
        kwargs={"ledger": ledger},
        queue=target_queue,
        serializer=serializer,
        ignore_result=True,
    )
    return child.id


@app.task(name="interop.clock", bind=True)
def clock(self: Any, label: str) -> dict[str, Any]:
    """When this worker ran the call (``time.time()``), and the ``eta`` header it saw."""
    return {
        "side": "amqptasks",
        "label": label,
        "id": self.request.id,
        "ran_at": time.time(),
        "eta": self.request.eta,
    }


@app.task(name="interop.flaky", bind=True)
def flaky(self: Any, retry_queue: str, countdown: float = 0) -> dict[str, Any]:
    """The attempt after a Celery worker retried the task into an amqptasks queue."""
    ran_at = time.time()
    # Let the Celery worker's RETRY state reach the caller before this SUCCESS does:
    # amqptasks' ResultBuffer lets a late non-final state replace a final one.
    time.sleep(0.5)
    request = self.request
    return {
        "side": "amqptasks",
        "id": request.id,
        "retries": request.retries,
        "ran_at": ran_at,
        "eta": request.eta,
    }
