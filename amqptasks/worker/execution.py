"""Run one task call and describe how it ended (no broker I/O here)."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

import structlog

from amqptasks.protocol.envelope import parse_time
from amqptasks.request import Request
from amqptasks.worker.outcome import Outcome
from amqptasks.worker.pools.aio import run_async_task

if TYPE_CHECKING:
    from collections.abc import Callable

    from amqptasks.policies.limits import TimeLimits
    from amqptasks.protocol.envelope import TaskMessage
    from amqptasks.task import Task
    from amqptasks.worker.pools.base import ExecutionPool, StartRecord

__all__ = ["Outcome", "execute", "is_expired", "make_request", "parse_time"]


def make_request(message: TaskMessage, *, hostname: str, queue: str, redelivered: bool) -> Request:
    """The :class:`Request` a task sees as ``self.request``."""
    return Request(
        id=message.id,
        task=message.task,
        args=message.args,
        kwargs=message.kwargs,
        retries=message.retries,
        root_id=message.root_id,
        parent_id=message.parent_id,
        group=message.group,
        reply_to=message.reply_to,
        correlation_id=message.correlation_id,
        eta=message.eta,
        expires=message.expires,
        origin=message.origin,
        hostname=hostname,
        queue=queue,
        redelivered=redelivered,
        headers=dict(message.headers),
    )


def is_expired(message: TaskMessage, now: dt.datetime | None = None) -> bool:
    """True when the message carries an ``expires`` time that has passed."""
    when = parse_time(message.expires)
    if when is None:
        return False
    return (now or dt.datetime.now(dt.timezone.utc)) >= when


async def execute(
    task: Task[Any, Any],
    request: Request,
    pool: ExecutionPool,
    limits: TimeLimits,
    on_start: Callable[[], None] | None = None,
    record: StartRecord | None = None,
) -> Outcome:
    """Run ``task`` for ``request``: coroutines on the loop, functions in ``pool``.

    Never raises for the task's own errors: they come back in the :class:`Outcome`.
    ``record.started_at`` is set to the time the call starts; ``on_start`` is called
    on the loop as it starts, before the task body.
    Call it in the delivery's own asyncio task: the log context it binds (task id,
    name, queue) lasts as long as that task's context.
    """
    structlog.contextvars.bind_contextvars(
        task_id=request.id, task=request.task, queue=request.queue
    )
    if task.is_async:
        if record is not None:
            record.started_at = time.time()
        if on_start is not None:
            on_start()
        return await run_async_task(task, request, limits)
    return await pool.run(task, request, limits, on_start, record)
