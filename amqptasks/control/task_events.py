"""A worker's task events: noted as each call moves on, built as each batch goes out.

A worker with ``-E`` sends three events per call (``task-received``, ``task-started``
and how it ended). The hooks run on the worker's event loop, the thread that bounds
a threads-pool worker, so at each point they only note the call
(:meth:`TaskEventNotes.note`): one tuple appended. The events themselves,
Celery's dictionaries with the fields of their type, are built in one pass when the
batch is sent (:meth:`TaskEventNotes.take`), in small batches: building a thousand
events at once holds the interpreter's lock for milliseconds, while pool threads
wait for it. What an event says is fixed when it is
noted: the call's state it reads no longer changes by then (its message, the time
it arrived and started, its outcome), and the time of a settled call is noted with it.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from amqptasks.control.events import task_fields
from amqptasks.worker.decisions import ENDS_A_RUN, DeadLetter, RetryLater, Skip

if TYPE_CHECKING:
    from collections.abc import Callable

    from amqptasks.control.events import EventStamp
    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.state import MessageState

__all__ = [
    "RECEIVED",
    "RESULT_REPR_LIMIT",
    "REVOKED",
    "SETTLED",
    "STARTED",
    "TERMINATED",
    "TaskEventNotes",
]

#: Longest ``result`` repr in a ``task-succeeded`` event.
RESULT_REPR_LIMIT = 1024
#: Noted on a call skipped as revoked (by id, not expired).
REVOKED = "fleet.revoked"
#: Noted on a running call whose pool process was stopped on purpose.
TERMINATED = "fleet.terminated"

#: The points of a call that make an event: received and decoded (``task-received``),
#: started at ``state.started_at`` (``task-started``), settled (``task-succeeded`` ...).
RECEIVED = 0
STARTED = 1
SETTLED = 2

#: ``(point, state, decision, when)``: decision and when only for a settled call.
_Note = tuple[int, "MessageState", "Decision | None", float]


class TaskEventNotes:
    """The task events of one worker not sent yet, in the order they happened.

    Args:
        stamp: Stamps each event as it is built (hostname, pid, clock ...).
        send_soon: Called with the first note after each :meth:`take` (to send them soon).
        send_now: Called when ``batch`` notes are waiting (to send them at once).
        batch: Notes that are sent at once (the events built per :meth:`take` at most).
    """

    __slots__ = ("batch", "notes", "send_now", "send_soon", "stamp")

    def __init__(
        self,
        stamp: EventStamp,
        *,
        send_soon: Callable[[], None],
        send_now: Callable[[], None],
        batch: int,
    ) -> None:
        self.stamp = stamp
        self.send_soon = send_soon
        self.send_now = send_now
        self.batch = batch
        self.notes: list[_Note] = []

    def __len__(self) -> int:
        return len(self.notes)

    def note(
        self, point: int, state: MessageState, decision: Decision | None = None, when: float = 0.0
    ) -> None:
        """The call of ``state`` reached ``point`` (:data:`RECEIVED`, :data:`STARTED`, or
        :data:`SETTLED` with its ``decision``, carried out at ``when``)."""
        notes = self.notes
        notes.append((point, state, decision, when))
        waiting = len(notes)
        if waiting == 1:
            self.send_soon()
        elif waiting >= self.batch:
            self.send_now()

    def take(self) -> list[dict[str, Any]]:
        """The events noted so far, built, in order; the notes are emptied."""
        notes = self.notes
        self.notes = []
        stamp = self.stamp
        stamp.refresh()
        events: list[dict[str, Any]] = []
        for point, state, decision, when in notes:
            message = state.message
            task_id = message.id if message is not None else state.task_id
            if task_id is None:
                continue
            if point == RECEIVED and message is not None:
                event = stamp.event("task-received", state.received_at)
                event.update(task_fields(message))
            elif point == STARTED:
                event = stamp.event("task-started", state.started_at)
            else:
                settled = _settled(stamp, state, decision, when) if decision is not None else None
                if settled is None:
                    continue
                event = settled
            event["uuid"] = task_id
            events.append(event)
        return events


def _settled(
    stamp: EventStamp, state: MessageState, decision: Decision, when: float
) -> dict[str, Any] | None:
    """The event that says how a call ended (without its ``uuid``); None for a message
    that goes back to its queue or to the delay levels (Celery sends nothing then)."""
    outcome = state.outcome
    if outcome is not None and isinstance(decision, ENDS_A_RUN):
        if outcome.exception is None:
            event = stamp.event("task-succeeded", when)
            started = state.started_at
            event["result"] = repr(outcome.value)[:RESULT_REPR_LIMIT]
            event["runtime"] = when - started if started is not None and when > started else 0.0
        else:
            event = stamp.event("task-failed", when)
            event["exception"] = repr(outcome.exception)
            event["traceback"] = outcome.traceback or ""
    elif isinstance(decision, Skip):
        terminated = bool(state.noted(TERMINATED))
        event = stamp.event("task-revoked", when)
        event["terminated"] = terminated
        event["signum"] = int(signal.SIGTERM) if terminated else None
        event["expired"] = not state.noted(REVOKED)
    elif isinstance(decision, RetryLater):
        error = decision.error
        event = stamp.event("task-retried", when)
        event["exception"] = repr(error) if error is not None else ""
        event["traceback"] = decision.traceback or ""
    elif isinstance(decision, DeadLetter):
        # Not run: undecodable, unknown task, too many deliveries, bad eta ...
        event = stamp.event("task-rejected", when)
        event["requeue"] = False
    else:
        return None
    return event
