"""Send the task signals of :mod:`amqptasks.signals` at their points of the lifecycle."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amqptasks import signals
from amqptasks.worker.decisions import Requeue, RetryLater
from amqptasks.worker.extension import Extension

if TYPE_CHECKING:
    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.state import MessageState


class TaskSignals(Extension):
    """``task_prerun``, ``task_postrun``, ``task_success``, ``task_retry``, ``task_failure``."""

    def wants_start(self, state: MessageState) -> bool:
        return signals.task_prerun.has_receivers(state.task)

    def on_start(self, state: MessageState) -> None:
        task, request = state.task, state.request
        assert task is not None and request is not None
        signals.task_prerun.send(
            task,
            task_id=request.id,
            task=task,
            args=request.args,
            kwargs=request.kwargs,
            request=request,
        )

    def after_run(self, state: MessageState) -> Decision | None:
        task, request, outcome = state.task, state.request, state.outcome
        assert task is not None and request is not None and outcome is not None
        if not signals.task_postrun.has_receivers(task):
            return None
        signals.task_postrun.send(
            task,
            task_id=request.id,
            task=task,
            args=request.args,
            kwargs=request.kwargs,
            retval=outcome.value if outcome.exception is None else outcome.exception,
            state=outcome.status,
        )
        return None

    def before_settle(self, state: MessageState, decision: Decision) -> None:
        task, message, outcome = state.task, state.message, state.outcome
        if outcome is None or task is None or message is None or isinstance(decision, Requeue):
            return  # not run, or back to its queue unfinished: no task signal
        if outcome.exception is None:
            signals.task_success.send(task, task_id=message.id, result=outcome.value)
        elif isinstance(decision, RetryLater):
            signals.task_retry.send(
                task,
                task_id=message.id,
                reason=decision.error,
                countdown=decision.countdown,
                retries=message.retries + 1,
            )
        else:
            signals.task_failure.send(
                task,
                task_id=message.id,
                exception=decision.report.exception if decision.report else outcome.exception,
                traceback=outcome.traceback,
                args=message.args,
                kwargs=message.kwargs,
            )
