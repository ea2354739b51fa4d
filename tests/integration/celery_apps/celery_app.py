"""A Celery 5 app whose tasks have the same names as ``amqptasks_app``'s.

Either side can send to a queue consumed by the other: ``interop.add`` runs on
whichever worker consumes the queue it was sent to. The broker URL comes from
``AMQPTASKS_BROKER_URL`` (``amqp://`` becomes ``pyamqp://``); results use the
``rpc://`` backend. ``INTEROP_SERIALIZER`` (json or msgpack) is the task and
result serializer of this process.

Every queue Celery creates on demand (``celery worker -Q name``, ``queue=name``)
is declared with the arguments of an amqptasks work queue, so that both sides
declare it identically; otherwise the second declaration fails with 406
PRECONDITION_FAILED.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.app.amqp import AMQP, Queues

from tests.integration.celery_apps.common import (
    Inventory,
    amqptasks_queue_arguments,
    write_ledger,
)

if TYPE_CHECKING:
    from kombu import Queue


def celery_broker_url(url: str) -> str:
    """``amqp://user:pw@host:port/vhost`` (an amqptasks URL) as a Celery ``pyamqp://`` URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("amqp", "pyamqp"):
        raise ValueError(f"expected an amqp:// URL, got {scheme!r}")
    return f"pyamqp://{rest}"


class AmqptasksQueues(Queues):  # type: ignore[misc]
    """Celery's queue table, creating missing queues with amqptasks' arguments."""

    def new_missing(self, name: str) -> Queue:
        queue = super().new_missing(name)
        queue.queue_arguments = {**(queue.queue_arguments or {}), **amqptasks_queue_arguments(name)}
        return queue


class InteropAMQP(AMQP):  # type: ignore[misc]
    queues_cls = AmqptasksQueues


SERIALIZER = os.environ.get("INTEROP_SERIALIZER", "json")

app = Celery(
    "interop",
    broker=celery_broker_url(os.environ.get("AMQPTASKS_BROKER_URL", "amqp://localhost//")),
    backend="rpc://",
    amqp=InteropAMQP,
)
app.conf.update(
    task_serializer=SERIALIZER,
    result_serializer=SERIALIZER,
    accept_content=["json", "msgpack"],
    result_accept_content=["json", "msgpack"],
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
)


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
    report = {
        "side": "celery",
        "id": request.id,
        "task": request.task,
        "root_id": request.root_id,
        "parent_id": request.parent_id,
        "group": request.group,
        "retries": request.retries,
        "argsrepr": request.argsrepr,
        "kwargsrepr": request.kwargsrepr,
        "expires": request.expires,
        "eta": request.eta,
        "origin": request.origin,
        "timelimit": list(request.timelimit) if request.timelimit else None,
        "priority": (request.delivery_info or {}).get("priority"),
        "tenant": getattr(request, "x-tenant", None),
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
    return str(child.id)


@app.task(name="interop.clock", bind=True)
def clock(self: Any, label: str) -> dict[str, Any]:
    """When this worker ran the call (``time.time()``), and the ``eta`` header it saw."""
    eta = self.request.eta
    return {
        "side": "celery",
        "label": label,
        "id": self.request.id,
        "ran_at": time.time(),
        "eta": eta.isoformat() if isinstance(eta, datetime) else eta,
    }


@app.task(name="interop.flaky", bind=True)
def flaky(self: Any, retry_queue: str, countdown: float = 0) -> dict[str, Any]:
    """Fails its first attempt by retrying into ``retry_queue`` (possibly the other side's),
    ``countdown`` seconds later (Celery then sends it with an ``eta`` header)."""
    if self.request.retries == 0:
        raise self.retry(countdown=countdown, max_retries=3, queue=retry_queue)
    return {"side": "celery", "id": self.request.id, "retries": self.request.retries}
