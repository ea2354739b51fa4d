"""The leader's decisions, without I/O: which occurrences to send, and when.

:class:`Plan` holds every active entry with its *cursor* (occurrences at or
before it are dealt with) and a heap of next occurrences. A new leader builds
it from what the broker recorded (:class:`Record`); then :meth:`Plan.due`
says what to send at each moment.

Catch-up (at takeover only): occurrences between the previous leader's last
"handled through" mark and now, that no record shows as sent, are *missed*;
an entry's ``catch_up`` picks among them: ``all`` (those within
``catch_up_window``), ``latest`` (the most recent one within the window) or
``skip``. Occurrences past their ``expires`` are never sent.
"""

from __future__ import annotations

import datetime as dt
import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from amqptasks.beat.entries import occurrence_id
from amqptasks.beat.schedules import get_zone

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from amqptasks.beat.entries import Entry

__all__ = ["Occurrence", "Plan", "Record"]


@dataclass(frozen=True)
class Occurrence:
    """One message to send: ``entry`` at ``instant`` (its task id is :attr:`task_id`)."""

    entry: Entry
    instant: dt.datetime
    task_id: str
    #: Set for a manual trigger: the request's own id.
    trigger: str | None = None

    @property
    def expires_at(self) -> dt.datetime | None:
        """When the message stops being worth running (the entry's ``expires`` after it)."""
        seconds = self.entry.options.get("expires")
        return self.instant + dt.timedelta(seconds=seconds) if seconds else None


@dataclass
class Record:
    """What the broker recorded before this leader took over (read from the history)."""

    #: Task ids already sent.
    sent: set[str] = field(default_factory=set)
    #: Latest instant sent, per entry name.
    last_sent: dict[str, dt.datetime] = field(default_factory=dict)
    #: The previous leaders' latest "every occurrence up to here is dealt with" mark;
    #: None when no beat ever ran here (nothing is caught up then).
    handled_through: dt.datetime | None = None


def catch_up(entry: Entry, missed: list[dt.datetime], now: dt.datetime) -> list[dt.datetime]:
    """The missed occurrences ``entry``'s policy sends (``missed`` in order)."""
    window = dt.timedelta(seconds=entry.catch_up_window or 0)
    recent = [instant for instant in missed if now - instant <= window]
    if entry.catch_up == "all":
        return recent
    if entry.catch_up == "latest":
        return recent[-1:]
    return []


def expired(occurrence: Occurrence, now: dt.datetime) -> bool:
    """Whether ``occurrence`` is later than its ``expires`` already."""
    until = occurrence.expires_at
    return until is not None and now > until


class Plan:
    """The active entries, their cursors and their next occurrences.

    Entries given to the plan have their defaults filled (time zone, catch-up).
    """

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._zones: dict[str, ZoneInfo] = {}
        self._cursor: dict[str, dt.datetime] = {}
        self._heap: list[tuple[dt.datetime, str]] = []
        self._next: dict[str, dt.datetime] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """The active entries' names."""
        return sorted(self._entries)

    def take_over(
        self,
        entries: list[tuple[Entry, dt.datetime | None]],
        record: Record,
        now: dt.datetime,
    ) -> list[Occurrence]:
        """Start leading at ``now``: the missed occurrences to send first.

        Args:
            entries: Active (not paused) entries with the instant they became
                active at runtime (added or resumed; None for code entries).
            record: What the history shows.
        """
        todo: list[Occurrence] = []
        for entry, since in entries:
            starts = [record.handled_through, record.last_sent.get(entry.name), since]
            known = [instant for instant in starts if instant is not None]
            start = max(known) if record.handled_through is not None and known else now
            if since is not None:
                start = max(start, since)
            zone = self._zone(entry)
            missed = [
                instant
                for instant in entry.schedule.occurrences(start, now, zone)
                if occurrence_id(entry.name, instant) not in record.sent
            ]
            for instant in catch_up(entry, missed, now):
                occurrence = Occurrence(entry, instant, occurrence_id(entry.name, instant))
                if not expired(occurrence, now):
                    todo.append(occurrence)
            self._activate(entry, now)
        todo.sort(key=lambda occurrence: occurrence.instant)
        return todo

    def add(self, entry: Entry, since: dt.datetime) -> None:
        """Activate (or replace) ``entry`` from ``since``: nothing before it is sent."""
        self._activate(entry, since)

    def remove(self, name: str) -> None:
        """Deactivate entry ``name`` (paused or removed)."""
        self._entries.pop(name, None)
        self._cursor.pop(name, None)
        self._next.pop(name, None)  # its heap item is dropped when it comes up

    def entry(self, name: str) -> Entry | None:
        """The active entry ``name``."""
        return self._entries.get(name)

    def _zone(self, entry: Entry) -> ZoneInfo:
        zone = self._zones.get(entry.timezone or "UTC")
        if zone is None:
            zone = self._zones[entry.timezone or "UTC"] = get_zone(entry.timezone or "UTC")
        return zone

    def _activate(self, entry: Entry, cursor: dt.datetime) -> None:
        self._entries[entry.name] = entry
        self._cursor[entry.name] = cursor
        self._schedule_next(entry.name)

    def _schedule_next(self, name: str) -> None:
        entry = self._entries[name]
        found = entry.schedule.next_after(self._cursor[name], self._zone(entry))
        if found is None:
            self._next.pop(name, None)
            return
        self._next[name] = found
        heapq.heappush(self._heap, (found, name))

    def next_due(self) -> dt.datetime | None:
        """The earliest next occurrence of any active entry."""
        while self._heap:
            instant, name = self._heap[0]
            if self._next.get(name) == instant:
                return instant
            heapq.heappop(self._heap)  # stale: the entry moved or left
        return None

    def due(self, now: dt.datetime) -> list[Occurrence]:
        """Every occurrence at or before ``now`` not handed out yet (expired ones dropped)."""
        found: list[Occurrence] = []
        while True:
            instant = self.next_due()
            if instant is None or instant > now:
                return found
            _, name = heapq.heappop(self._heap)
            entry = self._entries[name]
            occurrence = Occurrence(entry, instant, occurrence_id(name, instant))
            if not expired(occurrence, now):
                found.append(occurrence)
            self._cursor[name] = instant
            self._schedule_next(name)
