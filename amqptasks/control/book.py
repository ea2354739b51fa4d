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
    """Calls held (reserved or running) by id, and counts of calls finished by task name."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.processed: Counter[str] = Counter()
        self.started_at = time.monotonic()

    def reserve(self, task_id: str, state: MessageState) -> Entry:
        """``state`` was received and decoded (it starts as ``state.started_at`` is set)."""
        entry = self.entries[task_id] = Entry(state)
        return entry

    def finish(self, task_id: str) -> Entry | None:
        """The call of ``task_id`` is settled: forget it, count it."""
        entry = self.entries.pop(task_id, None)
        if entry is not None and entry.state.message is not None:
            self.processed[entry.state.message.task] += 1
        return entry

    def active(self) -> list[Entry]:
        """Running calls."""
        return [e for e in self.entries.values() if e.started is not None]

    def reserved(self) -> list[Entry]:
        """Calls received but not started."""
        return [e for e in self.entries.values() if e.started is None]

    @property
    def total(self) -> int:
        """Calls finished, all tasks together."""
        return sum(self.processed.values())

    def uptime(self) -> float:
        """Seconds since the worker started."""
        return time.monotonic() - self.started_at
