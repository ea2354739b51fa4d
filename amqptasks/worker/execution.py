"""Run one task call and describe how it ended (no broker I/O here)."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import traceback as tb
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from amqptasks._context import Request, current_request
from amqptasks.results import states

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from amqptasks.protocol.envelope import TaskMessage
    from amqptasks.task import Task


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a call ended: SUCCESS with a value, or FAILURE with an exception."""

    status: str
    value: Any = None
    exception: BaseException | None = None
    traceback: str | None = None


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


def parse_time(text: str | None) -> dt.datetime | None:
    """An aware datetime from an ISO 8601 header value (naive = UTC); None if absent/invalid."""
    if not text:
        return None
    if text.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not take "Z"
        text = text[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def is_expired(message: TaskMessage, now: dt.datetime | None = None) -> bool:
    """True when the message carries an ``expires`` time that has passed."""
    when = parse_time(message.expires)
    if when is None:
        return False
    return (now or dt.datetime.now(dt.timezone.utc)) >= when


def _call(task: Task[Any, Any], request: Request) -> Any:
    token = current_request.set(request)
    try:
        return task(*request.args, **request.kwargs)
    finally:
        current_request.reset(token)


async def execute(task: Task[Any, Any], request: Request, executor: Executor) -> Outcome:
    """Run ``task`` for ``request``: coroutines on the loop, functions in ``executor``."""
    with structlog.contextvars.bound_contextvars(
        task_id=request.id, task=request.task, queue=request.queue
    ):
        try:
            if task.is_async:
                token = current_request.set(request)
                try:
                    value = await task(*request.args, **request.kwargs)
                finally:
                    current_request.reset(token)
            else:
                context = contextvars.copy_context()
                loop = asyncio.get_running_loop()
                value = await loop.run_in_executor(executor, context.run, _call, task, request)
        except Exception as exc:
            return Outcome(states.FAILURE, exception=exc, traceback=tb.format_exc())
    return Outcome(states.SUCCESS, value=value)
