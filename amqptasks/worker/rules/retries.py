"""After a failed call: retry it through the delay levels, dead-letter it, or let it fail.

The task's :class:`~amqptasks.policies.retry.RetryPolicy` decides (pure); this
turns its answer into a worker decision and says so in the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amqptasks.logging import get_logger
from amqptasks.results import states
from amqptasks.worker.decisions import DeadLetter, Finish, RetryLater
from amqptasks.worker.extension import Extension
from amqptasks.worker.outcome import Outcome

if TYPE_CHECKING:
    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.state import MessageState

log = get_logger(__name__)


class Retries(Extension):
    """Applies each task's retry policy to its failures."""

    def on_failure(self, state: MessageState) -> Decision | None:
        message, task, outcome = state.message, state.task, state.outcome
        assert message is not None and task is not None and outcome is not None
        assert outcome.exception is not None
        decision = task.failure_policy.decide(outcome.exception, message.retries)
        shown = decision.exception or outcome.exception
        error = f"{type(shown).__name__}: {shown}"
        if decision.action == "retry":
            log.warning(
                "task failed; retrying",
                task_id=message.id,
                task=message.task,
                error=error,
                retries=message.retries + 1,
                countdown=decision.countdown,
            )
            return RetryLater(
                decision.countdown,
                shown,
                outcome.traceback,
                report=Outcome(states.RETRY, exception=shown, traceback=outcome.traceback),
            )
        log.error(
            "task failed",
            task_id=message.id,
            task=message.task,
            error=error,
            attempts=message.retries + 1,
        )
        log.debug("task traceback", task_id=message.id, traceback=outcome.traceback)
        failure = Outcome(states.FAILURE, exception=shown, traceback=outcome.traceback)
        if decision.action == "dead-letter":
            return DeadLetter(
                decision.reason,
                shown,
                outcome.traceback,
                attempts=message.retries + 1,
                report=failure,
            )
        return Finish(report=failure)
