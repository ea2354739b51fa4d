"""Runtime entry changes (add, remove, pause, resume, trigger) folded into a state (pure).

Every leader replays the ``entries`` stream through :class:`Changes`, then
keeps applying new records, so all leaders agree on which entries exist and
which are paused. Entries declared in code can be paused and resumed, not
removed or replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amqptasks.beat.entries import Entry
from amqptasks.beat.history import parse_iso
from amqptasks.exceptions import ConfigError
from amqptasks.logging import get_logger

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping

__all__ = ["Changes", "Trigger"]

log = get_logger(__name__)

#: The operations of the entries stream.
OPS = ("add", "remove", "pause", "resume", "trigger")


@dataclass(frozen=True)
class Trigger:
    """A request to send entry ``name`` once, now."""

    name: str
    request: str
    at: dt.datetime


@dataclass
class Changes:
    """Entries known to a beat: from code, plus runtime changes in stream order."""

    code: dict[str, Entry]
    runtime: dict[str, Entry] = field(default_factory=dict)
    #: Paused entry names, with when they were paused.
    paused: dict[str, dt.datetime] = field(default_factory=dict)
    #: When each entry last became active at runtime (added, replaced, resumed).
    since: dict[str, dt.datetime] = field(default_factory=dict)
    #: When each entry was last changed (for ``beat status``).
    changed: dict[str, dt.datetime] = field(default_factory=dict)

    def entry(self, name: str) -> Entry | None:
        """Entry ``name`` (code or runtime), paused or not."""
        return self.code.get(name) or self.runtime.get(name)

    def all(self) -> list[Entry]:
        """Every entry, code ones first."""
        return [*self.code.values(), *self.runtime.values()]

    def active(self) -> list[tuple[Entry, dt.datetime | None]]:
        """Entries not paused, each with when it became active at runtime (or None)."""
        return [
            (entry, self.since.get(entry.name))
            for entry in self.all()
            if entry.name not in self.paused
        ]

    def apply(self, record: Mapping[str, Any]) -> str | Trigger | None:
        """Fold one record in; returns the name of the entry it changed, or a Trigger.

        Bad or pointless records (remove a code entry, an unknown name) are
        logged and ignored: one bad record must not stop every leader.
        """
        op, name, at = record.get("op"), record.get("name"), parse_iso(record.get("at"))
        if op not in OPS or not isinstance(name, str) or at is None:
            if op != "marker":
                log.warning("ignored an unreadable beat entry change", record=str(record)[:200])
            return None
        if op == "add":
            if name in self.code:
                log.warning("ignored a runtime add over an entry declared in code", entry=name)
                return None
            try:
                entry = Entry.from_dict({**record.get("entry", {}), "name": name})
            except ConfigError as exc:
                log.warning("ignored a bad runtime entry", entry=name, error=str(exc))
                return None
            self.runtime[name] = entry
            self.since[name] = at
        elif self.entry(name) is None:
            log.warning("ignored a change of an unknown entry", entry=name, op=op)
            return None
        elif op == "remove":
            if name in self.code:
                log.warning("ignored removing an entry declared in code (pause it)", entry=name)
                return None
            self.runtime.pop(name, None)
            self.paused.pop(name, None)
            self.since.pop(name, None)
        elif op == "pause":
            self.paused.setdefault(name, at)
        elif op == "resume":
            if self.paused.pop(name, None) is not None:
                self.since[name] = at
        else:
            request = record.get("id")
            self.changed[name] = at
            return Trigger(name, str(request), at)
        self.changed[name] = at
        return name
