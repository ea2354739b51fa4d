"""What ``amqptasks events`` shows: the fleet as Celery's events describe it.

:class:`FleetView` folds events (from amqptasks and Celery workers alike) into
workers, per-state rates over a sliding window and the last failures; the
command adds queue, dead-letter and delay-level depths and draws it with rich.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.table import Table

__all__ = ["FleetView", "WorkerSeen"]

#: Seconds over which tasks per second are counted.
WINDOW = 10.0
#: Failures kept for the view.
FAILURES = 8
#: The task event that ends in each state, as Flower names the states.
STATES = {
    "task-received": "RECEIVED",
    "task-started": "STARTED",
    "task-succeeded": "SUCCESS",
    "task-failed": "FAILURE",
    "task-retried": "RETRY",
    "task-revoked": "REVOKED",
    "task-rejected": "REJECTED",
}


@dataclass
class WorkerSeen:
    """A worker as its ``worker-*`` events describe it."""

    hostname: str
    last: float = 0.0
    freq: float = 2.0
    active: int = 0
    processed: int = 0
    software: str = ""
    offline: bool = False

    @property
    def alive(self) -> bool:
        """Online while heartbeats arrive (Flower's rule: within 2 x freq)."""
        return not self.offline and time.time() - self.last < 2 * self.freq


@dataclass
class FleetView:
    """Workers, per-state rates and failures, from events (see the module docstring)."""

    workers: dict[str, WorkerSeen] = field(default_factory=dict)
    totals: Counter[str] = field(default_factory=Counter)
    recent: deque[tuple[float, str]] = field(default_factory=deque)
    failures: deque[tuple[str, str, str]] = field(default_factory=lambda: deque(maxlen=FAILURES))
    names: dict[str, str] = field(default_factory=dict)

    def add(self, event: dict[str, Any]) -> None:
        """Fold one event in."""
        kind = str(event.get("type", ""))
        now = time.time()
        if kind.startswith("worker-"):
            host = str(event.get("hostname", "?"))
            seen = self.workers.setdefault(host, WorkerSeen(host))
            seen.last = now
            seen.freq = float(event.get("freq") or 2.0)
            seen.active = int(event.get("active") or 0)
            seen.processed = int(event.get("processed") or 0)
            seen.software = f"{event.get('sw_ident', '')} {event.get('sw_ver', '')}".strip()
            seen.offline = kind == "worker-offline"
            return
        state = STATES.get(kind)
        if state is None:
            return
        uuid = str(event.get("uuid", ""))
        if event.get("name"):
            self.names[uuid] = str(event["name"])
        self.totals[state] += 1
        self.recent.append((now, state))
        if state == "FAILURE":
            self.failures.append((self.names.get(uuid, "?"), uuid, str(event.get("exception", ""))))

    def rates(self) -> dict[str, float]:
        """Tasks per second in each state over the last :data:`WINDOW` seconds."""
        cutoff = time.time() - WINDOW
        while self.recent and self.recent[0][0] < cutoff:
            self.recent.popleft()
        counts = Counter(state for _t, state in self.recent)
        return {state: counts[state] / WINDOW for state in STATES.values()}

    def render(self, depths: list[tuple[str, int | None]] | None = None) -> Group:
        """The view as rich tables (``depths``: queue name and messages, None if missing)."""
        workers = Table(title="workers")
        for column in ("worker", "status", "active", "processed", "software"):
            workers.add_column(column)
        for seen in sorted(self.workers.values(), key=lambda w: w.hostname):
            status = "online" if seen.alive else "offline"
            workers.add_row(
                seen.hostname, status, str(seen.active), str(seen.processed), seen.software
            )
        states = Table(title=f"tasks (per second over {WINDOW:.0f} s, and in total)")
        for column in ("state", "per second", "total"):
            states.add_column(column)
        for state, rate in self.rates().items():
            states.add_row(state, f"{rate:.1f}", str(self.totals[state]))
        failures = Table(title="last failures")
        for column in ("task", "id", "exception"):
            failures.add_column(column)
        for name, uuid, exception in reversed(self.failures):
            failures.add_row(name, uuid, exception)
        parts: list[Any] = [workers, states, failures]
        if depths is not None:
            queues = Table(title="queues")
            queues.add_column("queue")
            queues.add_column("messages")
            for name, depth in depths:
                queues.add_row(name, "-" if depth is None else str(depth))
            parts.append(queues)
        return Group(*parts)
