"""What a worker holds right now: reserved and running calls, and what it has done.

``celery inspect active|reserved|query_task|stats`` and the ``worker-heartbeat``
event read it. Kept on the worker's event loop only (no lock).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from amqptasks.worker.state import MessageState


class Entry:
    """One call the worker holds (one per call: a plain class with slots)."""

    __slots__ = ("state", "worker_pid")

    def __init__(self, state: MessageState) -> None:
        self.state = state
        #: Thread or process id that runs it, when known.
        self.worker_pid: int | None = None

    @property
    def started(self) -> float | None:
        """Wall-clock start (None: reserved, not started)."""
        return self.state.started_at

    def info(self, hostname: str) -> dict[str, Any]:
        """Celery's ``Request.info()``: what ``inspect active`` shows of a call."""
        state = self.state
        message = state.message
        delivery = state.delivery
        headers = message.headers if message is not None else {}
        return {
            "id": state.task_id,
            "name": message.task if message is not None else None,
            "args": list(message.args) if message is not None else [],
            "kwargs": dict(message.kwargs) if message is not None else {},
            "type": message.task if message is not None else None,
            "hostname": hostname,
            "time_start": self.started,
            "acknowledged": state.acks_early,
            "delivery_info": {
                "exchange": delivery.exchange,
                "routing_key": delivery.routing_key,
                "priority": delivery.priority,
                "redelivered": delivery.redelivered,
            },
            "worker_pid": self.worker_pid,
            "argsrepr": headers.get("argsrepr"),
            "kwargsrepr": headers.get("kwargsrepr"),
            "eta": message.eta if message is not None else None,
            "expires": message.expires if message is not None else None,
            "retries": message.retries if message is not None else 0,
        }


class TaskBook:
    """Calls held (reserved or running) by id, and counts of calls finished by task name.

    It keeps each call's state, not an :class:`Entry`: the worker books every call, and
    ``inspect`` asks now and then.
    """

    def __init__(self) -> None:
        self.held: dict[str, MessageState] = {}
        self.processed: Counter[str] = Counter()
        self.started_at = time.monotonic()

    def reserve(self, task_id: str, state: MessageState) -> None:
        """``state`` was received and decoded (it starts as ``state.started_at`` is set)."""
        self.held[task_id] = state

    def finish(self, task_id: str) -> None:
        """The call of ``task_id`` is settled: forget it, count it."""
        state = self.held.pop(task_id, None)
        if state is not None and state.message is not None:
            self.processed[state.message.task] += 1

    def get(self, task_id: str) -> Entry | None:
        """The call of ``task_id``, if held."""
        state = self.held.get(task_id)
        return Entry(state) if state is not None else None

    def active(self) -> list[Entry]:
        """Running calls."""
        return [Entry(s) for s in self.held.values() if s.started_at is not None]

    def reserved(self) -> list[Entry]:
        """Calls received but not started."""
        return [Entry(s) for s in self.held.values() if s.started_at is None]

    @property
    def total(self) -> int:
        """Calls finished, all tasks together."""
        return sum(self.processed.values())

    def uptime(self) -> float:
        """Seconds since the worker started."""
        return time.monotonic() - self.started_at
