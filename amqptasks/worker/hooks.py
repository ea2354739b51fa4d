"""Send the task signals of :mod:`amqptasks.signals` from the delivery handler.

One function per moment, so that the handler calls one line at each point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amqptasks import signals

if TYPE_CHECKING:
    from amqptasks.protocol.envelope import TaskMessage
    from amqptasks.request import Request
    from amqptasks.task import Task
    from amqptasks.worker.outcome import Outcome


def prerun(task: Task[Any, Any], request: Request) -> None:
    """Just before ``task`` runs for ``request``."""
    signals.task_prerun.send(
        task,
        task_id=request.id,
        task=task,
        args=request.args,
        kwargs=request.kwargs,
        request=request,
    )


def postrun(task: Task[Any, Any], request: Request, outcome: Outcome) -> None:
    """Just after it ran, whatever the outcome."""
    signals.task_postrun.send(
        task,
        task_id=request.id,
        task=task,
        args=request.args,
        kwargs=request.kwargs,
        retval=outcome.value if outcome.exception is None else outcome.exception,
        state=outcome.status,
    )


def success(task: Task[Any, Any], message: TaskMessage, outcome: Outcome) -> None:
    """It returned ``outcome.value``."""
    signals.task_success.send(task, task_id=message.id, result=outcome.value)


def failure(
    task: Task[Any, Any], message: TaskMessage, exception: BaseException, traceback: str | None
) -> None:
    """It failed for good (no retry left, or not retried)."""
    signals.task_failure.send(
        task,
        task_id=message.id,
        exception=exception,
        traceback=traceback,
        args=message.args,
        kwargs=message.kwargs,
    )


def retry(
    task: Task[Any, Any], message: TaskMessage, reason: BaseException, countdown: float
) -> None:
    """It failed and is about to be sent again, as retry number ``retries``."""
    signals.task_retry.send(
        task, task_id=message.id, reason=reason, countdown=countdown, retries=message.retries + 1
    )
