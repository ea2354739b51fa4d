"""A worker's task events: built as each call moves on, sent in batches.

A worker with ``-E`` sends three events per call (``task-received``, ``task-started``
and how it ended): Celery's dictionaries with the fields of their type, all built on
the worker's event loop and kept in order until the batch goes out as one message
(:meth:`TaskEvents.take`).

``task-started`` costs the call no hook as it starts: the pool writes the time it
started into ``state.started_at`` anyway, and the event, dated then, is built as the
call is settled, or, for a call still running when its batch goes out, as the batch
goes out (:meth:`TaskEvents.take` looks at the calls received and not yet started).
So a long task's start is sent within one batch interval.

An event is built at once rather than noted and built later: holding each call's state
until its batch goes out kept dozens of objects per call alive for the garbage
collector to walk, which cost a busy worker more than building the events. An event
holds only strings and numbers, which the collector does not track.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import Terminated
from amqptasks.worker.decisions import ENDS_A_RUN, DeadLetter, RetryLater, Skip

if TYPE_CHECKING:
    from collections.abc import Callable

    from amqptasks.control.events import EventStamp
    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.state import MessageState

__all__ = ["RESULT_REPR_LIMIT", "REVOKED", "TaskEvents"]

#: Longest ``result`` repr in a ``task-succeeded`` event.
RESULT_REPR_LIMIT = 1024
#: Noted on a call skipped as revoked (by id, not expired).
REVOKED = "fleet.revoked"


class TaskEvents:
    """The task events of one worker not sent yet, in the order they happened (use on
    the event loop only).

    Args:
        stamp: Stamps each event (hostname, pid, clock ...).
        send_soon: Called with the first event after each :meth:`take` (to send them
            soon).
        send_now: Called when ``batch`` events are waiting (to send them at once).
        batch: Events that are sent at once.
    """

    __slots__ = ("batch", "events", "send_now", "send_soon", "stamp", "unstarted")

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
        self.events: list[dict[str, Any]] = []
        #: The calls received whose ``task-started`` is not sent yet, by task id.
        self.unstarted: dict[str, MessageState] = {}

    def __len__(self) -> int:
        return len(self.events)

    def received(self, state: MessageState) -> None:
        """``task-received``: the call of ``state`` was decoded, with the fields Celery
        fills from the task message."""
        message = state.message
        if message is None:
            return
        headers = message.headers
        stamp = self.stamp
        self.unstarted[message.id] = state
        events = self.events
        waiting = len(events)
        # One dict() call, written out: EventStamp.event and then the nine fields of
        # this event, or a builder taking them as keywords, cost it twice as much.
        events.append(
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
        self._added(waiting)

    def settled(self, state: MessageState, task_id: str, decision: Decision, when: float) -> None:
        """How the call ``task_id`` of ``state`` ended: ``decision``, carried out at
        ``when``, after its ``task-started`` if that is not sent yet; nothing for a
        message that goes back to its queue or to the delay levels (Celery sends
        nothing then)."""
        events = self.events
        waiting = len(events)
        started = state.started_at
        if self.unstarted.pop(task_id, None) is not None and started is not None:
            events.append(self.stamp.event("task-started", started, task_id))
        event = _settled(self.stamp, state, task_id, decision, when)
        if event is not None:
            events.append(event)
        self._added(waiting)

    def _added(self, waiting: int) -> None:
        """Events were added to the ``waiting`` ones: ask for them to be sent."""
        now = len(self.events)
        if now >= self.batch:
            self.send_now()
        elif waiting == 0 and now:
            self.send_soon()

    def take(self) -> list[dict[str, Any]]:
        """The events so far, in order, removed, with a ``task-started`` for each call
        that started since (the stamp read again for the next)."""
        unstarted = self.unstarted
        stamp = self.stamp
        for task_id, state in list(unstarted.items()):
            started = state.started_at
            if started is not None:
                del unstarted[task_id]
                self.events.append(stamp.event("task-started", started, task_id))
        taken, self.events = self.events, []
        stamp.refresh()
        return taken


def _settled(
    stamp: EventStamp, state: MessageState, task_id: str, decision: Decision, when: float
) -> dict[str, Any] | None:
    """The event that says how the call ``task_id`` ended, or None."""
    outcome = state.outcome
    if outcome is not None and isinstance(decision, ENDS_A_RUN):
        if outcome.exception is None:
            started = state.started_at
            event = stamp.event("task-succeeded", when, task_id)
            event["result"] = repr(outcome.value)[:RESULT_REPR_LIMIT]
            event["runtime"] = when - started if started is not None and when > started else 0.0
        else:
            event = stamp.event("task-failed", when, task_id)
            event["exception"] = repr(outcome.exception)
            event["traceback"] = outcome.traceback or ""
    elif isinstance(decision, Skip):
        stopped = outcome.exception if outcome is not None else None
        signum = stopped.signum if isinstance(stopped, Terminated) else None
        event = stamp.event("task-revoked", when, task_id)
        event["terminated"] = signum is not None
        event["signum"] = signum
        event["expired"] = signum is None and not state.noted(REVOKED)
    elif isinstance(decision, RetryLater):
        error = decision.error
        event = stamp.event("task-retried", when, task_id)
        event["exception"] = repr(error) if error is not None else ""
        event["traceback"] = decision.traceback or ""
    elif isinstance(decision, DeadLetter):
        # Not run: undecodable, unknown task, too many deliveries, bad eta ...
        event = stamp.event("task-rejected", when, task_id)
        event["requeue"] = False
    else:
        return None
    return event
