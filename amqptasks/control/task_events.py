"""A worker's task events: built as each call moves on, sent in batches.

A worker with ``-E`` sends three events per call (``task-received``, ``task-started``
and how it ended): Celery's dictionaries with the fields of their type, each built at
its point, where the call is (received and settled on the worker's event loop,
started in the pool thread that starts the call), and kept in order until the batch
goes out as one message (:meth:`TaskEvents.take`).

An event is built at once rather than noted and built later: holding each call's state
until its batch goes out kept dozens of objects per call alive for the garbage
collector to walk, which cost a busy worker more than building the events. An event
holds only strings and numbers, which the collector does not track.
"""

from __future__ import annotations

import collections
import signal
from typing import TYPE_CHECKING, Any

from amqptasks.worker.decisions import ENDS_A_RUN, DeadLetter, RetryLater, Skip

if TYPE_CHECKING:
    from collections.abc import Callable

    from amqptasks.control.events import EventStamp
    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.state import MessageState

__all__ = ["RESULT_REPR_LIMIT", "REVOKED", "TERMINATED", "TaskEvents"]

#: Longest ``result`` repr in a ``task-succeeded`` event.
RESULT_REPR_LIMIT = 1024
#: Noted on a call skipped as revoked (by id, not expired).
REVOKED = "fleet.revoked"
#: Noted on a running call whose pool process was stopped on purpose.
TERMINATED = "fleet.terminated"


class TaskEvents:
    """The task events of one worker not sent yet, in the order they happened.

    :meth:`received` and :meth:`settled` run on the event loop; :meth:`started` in
    any thread (the events are a deque, whose append and popleft are atomic).

    Args:
        stamp: Stamps each event (hostname, pid, clock ...).
        send_soon: Called on the loop with the first event after each :meth:`take`
            (to send them soon).
        send_now: Called on the loop when ``batch`` events are waiting (to send them
            at once).
        wake: Thread-safe: has ``send_soon`` called on the loop (for a start that comes
            first, in another thread).
        batch: Events that are sent at once.
    """

    __slots__ = ("batch", "events", "send_now", "send_soon", "stamp", "wake")

    def __init__(
        self,
        stamp: EventStamp,
        *,
        send_soon: Callable[[], None],
        send_now: Callable[[], None],
        wake: Callable[[], None],
        batch: int,
    ) -> None:
        self.stamp = stamp
        self.send_soon = send_soon
        self.send_now = send_now
        self.wake = wake
        self.batch = batch
        self.events: collections.deque[dict[str, Any]] = collections.deque()

    def __len__(self) -> int:
        return len(self.events)

    def received(self, state: MessageState) -> None:
        """``task-received``: the call of ``state`` was decoded (on the loop), with the
        fields Celery fills from the task message."""
        message = state.message
        if message is None:
            return
        headers = message.headers
        stamp = self.stamp
        # One dict() call, written out: EventStamp.event and then the nine fields of
        # this event, or a builder taking them as keywords, cost it twice as much.
        self._add(
            dict(
                stamp.head,
                clock=next(stamp.clock.counter),
                timestamp=state.received_at,
                type="task-received",
                uuid=message.id,
                name=message.task,
                args=headers.get("argsrepr") or repr(tuple(message.args)),
                kwargs=headers.get("kwargsrepr") or repr(dict(message.kwargs)),
                root_id=message.root_id,
                parent_id=message.parent_id,
                retries=message.retries,
                eta=message.eta,
                expires=message.expires,
            )
        )

    def started(self, state: MessageState) -> None:
        """``task-started``, at ``state.started_at`` (in any thread)."""
        message = state.message
        if message is None:
            return
        event = self.stamp.event("task-started", state.started_at)
        event["uuid"] = message.id
        events = self.events
        events.append(event)
        # Appended first: a take that ran in between left it an event that is not alone.
        if len(events) == 1:
            self.wake()

    def settled(self, state: MessageState, task_id: str, decision: Decision, when: float) -> None:
        """How the call ``task_id`` of ``state`` ended: ``decision``, carried out at
        ``when`` (on the loop); nothing for a message that goes back to its queue or to
        the delay levels (Celery sends nothing then)."""
        event = _settled(self.stamp, state, decision, when)
        if event is None:
            return
        event["uuid"] = task_id
        self._add(event)

    def _add(self, event: dict[str, Any]) -> None:
        events = self.events
        events.append(event)
        waiting = len(events)
        if waiting == 1:
            self.send_soon()
        elif waiting >= self.batch:
            self.send_now()

    def take(self) -> list[dict[str, Any]]:
        """The events so far, in order, removed (the stamp read again for the next)."""
        events = self.events
        taken = [events.popleft() for _ in range(len(events))]
        self.stamp.refresh()
        return taken


def _settled(
    stamp: EventStamp, state: MessageState, decision: Decision, when: float
) -> dict[str, Any] | None:
    """The event that says how a call ended (without its ``uuid``), or None."""
    outcome = state.outcome
    if outcome is not None and isinstance(decision, ENDS_A_RUN):
        if outcome.exception is None:
            started = state.started_at
            event = stamp.event("task-succeeded", when)
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
