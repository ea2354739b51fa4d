"""Operating the beat from outside: runtime entry changes and ``beat status``.

Changes are records appended (confirmed) to the entries stream; the leader
follows that stream and applies them within moments, and every later leader
replays it. :func:`status` reads both streams without writing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amqptasks.beat import history
from amqptasks.beat.changes import Changes
from amqptasks.beat.entries import Entry, code_entries, with_defaults
from amqptasks.beat.history import Names
from amqptasks.beat.schedules import get_zone
from amqptasks.exceptions import ConfigError
from amqptasks.transport import aio

if TYPE_CHECKING:
    import aio_pika

    from amqptasks.app import App

__all__ = ["EntryStatus", "Status", "change_entry", "status"]

#: Seconds without a new message after which a stream is taken as read to its end.
IDLE = 1.0


def utcnow() -> dt.datetime:
    """Now, as an aware UTC datetime."""
    return dt.datetime.now(dt.timezone.utc)


async def change_entry(app: App, op: str, name: str, entry: Entry | None = None) -> None:
    """Append a change of entry ``name`` to the entries stream (confirmed).

    Args:
        op: ``add`` (with ``entry``), ``remove``, ``pause``, ``resume`` or ``trigger``.

    Raises:
        ConfigError: removing or replacing an entry declared in code, or an op on
            a name that is neither in code nor in the broker's runtime entries.
    """
    code = {item.name for item in code_entries(app)}
    if op in ("add", "remove") and name in code:
        raise ConfigError(f"entry {name!r} is declared in code: pause or resume it instead")
    if op == "add" and entry is None:
        raise ConfigError("beat add needs an entry")
    names = Names(app.settings.beat_prefix)
    connection = await aio.connect(app.settings.broker, "amqptasks beat control")
    try:
        channel = await connection.channel(publisher_confirms=True)
        await history.declare(channel, names)
        if op != "add" and name not in code:
            changes = await _read_changes(connection, names, Changes(code={}), utcnow())
            if name not in changes.runtime:
                raise ConfigError(f"no periodic entry named {name!r}")
        fields: dict[str, Any] = {"entry": entry.to_dict()} if entry is not None else {}
        await channel.default_exchange.publish(
            history.change(op, name, utcnow(), **fields), routing_key=names.entries
        )
    finally:
        await connection.close()


@dataclass(frozen=True)
class EntryStatus:
    """One entry as ``beat status`` shows it."""

    entry: Entry
    source: str
    paused: bool
    last_instant: dt.datetime | None
    last_task_id: str | None
    next_instant: dt.datetime | None


@dataclass(frozen=True)
class Status:
    """Every entry, and who leads."""

    entries: list[EntryStatus]
    #: The node that wrote the latest tick, and when (None: no beat has run here).
    leader: str | None
    leader_seen: dt.datetime | None
    #: Beat processes waiting in line (consumers of the leader queue).
    processes: int


async def status(app: App, now: dt.datetime | None = None) -> Status:
    """Read the entries and the history (the last ``beat_catch_up_window``) from the broker."""
    settings = app.settings
    now = now or utcnow()
    names = Names(settings.beat_prefix)
    code = {entry.name: entry for entry in code_entries(app)}
    connection = await aio.connect(settings.broker, "amqptasks beat status")
    try:
        channel = await connection.channel()
        await history.declare(channel, names)
        leader_queue = await channel.declare_queue(names.leader, passive=True)
        processes = leader_queue.declaration_result.consumer_count or 0
        changes = await _read_changes(connection, names, Changes(code=code), now)
        last: dict[str, tuple[dt.datetime, str]] = {}
        leader: tuple[dt.datetime, str] | None = None

        def visit(headers: dict[str, Any]) -> dt.datetime | None:
            nonlocal leader
            at = history.parse_iso(headers.get(history.HEADER_AT))
            if at is None:
                return None
            kind = history.text(headers.get(history.HEADER_KIND))
            if kind is not None:
                node = history.text(headers.get(history.HEADER_LEADER)) or "?"
                if leader is None or at >= leader[0]:
                    leader = (at, node)
                return at
            entry, task_id = (
                history.text(headers.get(history.HEADER_ENTRY)),
                history.text(headers.get("id")),
            )
            if entry and task_id and (entry not in last or at >= last[entry][0]):
                last[entry] = (at, task_id)
            return None  # an occurrence's instant says nothing of when it was written

        start = now - dt.timedelta(seconds=settings.beat_catch_up_window)
        reader = await connection.channel()
        await reader.set_qos(prefetch_count=history.STREAM_PREFETCH)
        await _drain(
            reader, names.history, start, lambda m: visit(dict(m.headers or {})), until=now
        )
    finally:
        await connection.close()
    rows = []
    for entry in changes.all():
        full = with_defaults(entry, settings)
        paused = entry.name in changes.paused
        found = last.get(entry.name)
        upcoming = (
            None if paused else full.schedule.next_after(now, get_zone(full.timezone or "UTC"))
        )
        rows.append(
            EntryStatus(
                entry=full,
                source="code" if entry.name in code else "runtime",
                paused=paused,
                last_instant=found[0] if found else None,
                last_task_id=found[1] if found else None,
                next_instant=upcoming,
            )
        )
    return Status(
        rows,
        leader[1] if leader else None,
        leader[0] if leader else None,
        processes,
    )


async def _read_changes(
    connection: aio_pika.abc.AbstractRobustConnection,
    names: Names,
    changes: Changes,
    until: dt.datetime,
) -> Changes:
    reader = await connection.channel()
    await reader.set_qos(prefetch_count=history.STREAM_PREFETCH)

    def visit(message: aio_pika.abc.AbstractIncomingMessage) -> dt.datetime | None:
        try:
            record = json.loads(message.body)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        changes.apply(record)
        return history.parse_iso(record.get("at"))

    await _drain(reader, names.entries, "first", visit, until=until)
    return changes


async def _drain(
    channel: aio_pika.abc.AbstractChannel,
    queue: str,
    offset: str | dt.datetime,
    visit: Any,
    until: dt.datetime,
) -> None:
    """Read stream ``queue`` from ``offset`` up to a record stamped ``until`` or later
    (a running leader writes one every tick), or until it stays quiet for :data:`IDLE` s.

    ``visit`` is called with each message and returns the record's instant (or None).
    """
    stream = await channel.get_queue(queue, ensure=False)
    arrived = asyncio.Event()
    reached = asyncio.Event()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()
        if reached.is_set():
            return
        stamp = visit(message)
        arrived.set()
        if stamp is not None and stamp >= until:
            reached.set()

    tag = await stream.consume(on_message, arguments={"x-stream-offset": offset})
    try:
        while not reached.is_set():
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), IDLE)
            except asyncio.TimeoutError:
                return
    finally:
        with contextlib.suppress(Exception):
            await stream.cancel(tag)
