"""How a delivery ends: the typed decisions that worker extensions return.

A hook of a :class:`~amqptasks.worker.extension.Extension` returns ``None`` to let
the delivery go on, or one of these to end it there. The delivery handler turns
the decision into broker actions, always publishing (with confirm) before it
acks, so that a crash in between duplicates a message rather than losing it:

============== ================================================================
decision       what the handler does
============== ================================================================
``Finish``     the call ended (success, or a failure that is not kept): ack
``Skip``       not run (expired, revoked, ...): ack
``Requeue``    not started: back to its queue (``basic.nack``, requeue)
``RetryLater`` republish through the delay levels as the next attempt, then ack
``Defer``      republish through the delay levels as the same attempt, then ack
``DeadLetter`` copy to the queue's dead-letter queue with the reason, then ack
============== ================================================================

``report`` is what the caller waiting on the result is told (a result reply,
when the call wants one); None tells it nothing, except that a ``DeadLetter``
without a report tells it FAILURE with the decision's error (unless ``quiet``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from amqptasks.worker.outcome import Outcome

__all__ = [
    "ENDS_A_RUN",
    "CannotSettle",
    "DeadLetter",
    "Decision",
    "Defer",
    "Finish",
    "Requeue",
    "RetryLater",
    "Skip",
]


@dataclass(frozen=True, slots=True)
class Decision:
    """Base of every decision; see the module docstring."""

    #: The state the caller is told (SUCCESS, FAILURE, RETRY, REVOKED ...), if any.
    report: Outcome | None = field(default=None, kw_only=True)


@dataclass(frozen=True, slots=True)
class Finish(Decision):
    """The call ran to its end: ack the delivery."""


@dataclass(frozen=True, slots=True)
class Skip(Decision):
    """Do not run the call, and forget the message (ack it)."""


@dataclass(frozen=True, slots=True)
class Requeue(Decision):
    """Give the message back to its queue unstarted (the worker stops, say)."""


@dataclass(frozen=True, slots=True)
class RetryLater(Decision):
    """Run the call again as its next attempt, ``countdown`` seconds from now."""

    countdown: float
    #: Why (reported to the caller with the RETRY state, and to ``task_retry``).
    error: BaseException | None = None
    traceback: str | None = None


@dataclass(frozen=True, slots=True)
class Defer(Decision):
    """Deliver the same attempt again ``countdown`` seconds from now.

    ``headers`` are set on the copy (a counter, say).
    """

    countdown: float
    headers: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter(Decision):
    """Move the message to its queue's dead-letter queue, saying why.

    ``reason`` goes into the ``x-amqptasks-reason`` header (``failed``,
    ``bad-message``, ``unknown-task`` ...), ``error``'s type and text into
    ``x-amqptasks-exception`` and ``x-amqptasks-error``.
    """

    reason: str
    error: BaseException
    traceback: str | None = None
    #: Attempts made so far, when known (``x-amqptasks-attempts``).
    attempts: int | None = None
    #: Tell the caller nothing (a replayed copy: its caller had the original's answer).
    quiet: bool = False


#: The decisions that end a call with its own outcome: with ``state.outcome`` set, the
#: call succeeded or failed (a retry, a revoke or a requeue says otherwise).
ENDS_A_RUN = (Finish, DeadLetter)


class CannotSettle(Exception):
    """Raised by a ``before_settle`` hook that could not do what must precede the settlement.

    Publishing a workflow's next step before its call is acked, say: when that
    publish fails the call must not be acked. The worker then handles the
    delivery as a decision it could not carry out: back to its queue after a
    broker failure (``cause`` a :class:`~amqptasks.exceptions.BrokerError`; the
    delivery cap ends a failure that lasts), else to its dead-letter queue as
    ``worker-error``. Any other exception from
    ``before_settle`` is logged and the decision carried out as it was.
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause
