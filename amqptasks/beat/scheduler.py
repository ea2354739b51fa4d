"""The beat: campaign for leadership, and while leading, send what the plan says.

This module only does I/O; the decisions are in :mod:`amqptasks.beat.plan`
(what is due, catch-up) and :mod:`amqptasks.beat.changes` (runtime entries).

A leader sends each occurrence as an ordinary task message, built by the same
:func:`~amqptasks.publishing.prepare_call` as ``apply_async`` and published
(confirmed, ``mandatory``) by the same :class:`~amqptasks.transport.aio.AioPublisher`,
with the occurrence's id as task id and a ``BCC`` header naming the history
stream: one publish puts the task in its queue and the record in the history.
It publishes on the connection that holds the leader token, so losing
leadership and losing the means to publish are the same event.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import socket
from typing import TYPE_CHECKING, Any, TypeVar

import aio_pika

from amqptasks._client import destination_keys, destinations, producer_mismatch
from amqptasks.beat import history
from amqptasks.beat.changes import Changes, Trigger
from amqptasks.beat.entries import code_entries, trigger_id, with_defaults
from amqptasks.beat.history import Names
from amqptasks.beat.leader import Leadership
from amqptasks.beat.plan import Occurrence, Plan, Record
from amqptasks.exceptions import AmqptasksError, TopologyMismatch
from amqptasks.logging import get_logger
from amqptasks.publishing import PreparedCall, prepare_call
from amqptasks.security.wanted import sealer_for
from amqptasks.transport import aio

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from amqptasks.app import App
    from amqptasks.beat.entries import Entry

__all__ = ["Beat"]

T = TypeVar("T")

log = get_logger(__name__)

#: Occurrences published at once (their confirms awaited together).
SEND_BATCH = 500
#: Seconds between two attempts to reach the broker.
RETRY_INTERVAL = 1.0
#: Longest sleep of the loop (changes wake it at once; this bounds clock drift).
MAX_SLEEP = 1.0


def utcnow() -> dt.datetime:
    """Now, as an aware UTC datetime."""
    return dt.datetime.now(dt.timezone.utc)


def default_node_name() -> str:
    """``beat@<host>:<pid>``."""
    return f"beat@{socket.gethostname()}:{os.getpid()}"


class Beat:
    """One beat process: any number may run; the broker picks the one that sends.

    Args:
        app: The app whose entries (``beat_schedule``, ``add_periodic_task``,
            ``@periodic``) and runtime entries are sent.
        node_name: Names this process in the history and ``beat status``.

    Example:
        >>> asyncio.run(Beat(app).run())
    """

    def __init__(self, app: App, *, node_name: str | None = None) -> None:
        self.app = app
        self.node_name = node_name or default_node_name()
        settings = app.settings
        self.names = Names(settings.beat_prefix)
        # Checked now: a bad beat_schedule fails at start, not at the first takeover.
        self._code = {entry.name: with_defaults(entry, settings) for entry in code_entries(app)}
        self._stopping = asyncio.Event()
        self.leading = asyncio.Event()
        #: Occurrences sent by this process (for tests and the benchmark).
        self.sent_count = 0
        #: Seconds each occurrence was sent after its instant (benchmark).
        self.lateness: list[float] = []
        self.record_lateness = False

    def stop(self) -> None:
        """Stop: a leader hands over at once (its token goes back to the queue)."""
        self._stopping.set()

    async def run(self) -> None:
        """Campaign and lead until :meth:`stop`; reconnects after broker outages."""
        while not self._stopping.is_set():
            try:
                await self._session()
            except (AmqptasksError, aio_pika.exceptions.AMQPException, ConnectionError) as exc:
                log.warning("beat lost the broker; retrying", error=f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # a beat must not die quietly inside a worker
                log.error("beat failed; retrying", error=f"{type(exc).__name__}: {exc}")
                log.debug("beat failure", exc_info=True)
            self.leading.clear()
            if not self._stopping.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), RETRY_INTERVAL)

    async def _session(self) -> None:
        settings = self.app.settings
        connection = await aio.connect(settings.broker, f"amqptasks {self.node_name}")
        try:
            channel = await connection.channel()
            await history.declare(channel, self.names)
            leadership = Leadership(connection, self.names.leader)
            await leadership.campaign(await connection.channel())
            log.info("beat waiting for leadership", node=self.node_name)
            if await self._first(leadership.won.wait(), leadership.lost.wait()):
                await _Leader(self, connection, leadership).lead()
        finally:
            with contextlib.suppress(Exception):
                await connection.close()

    async def _first(self, *waits: Any) -> bool:
        """Wait for the first of ``waits`` or for stop; True if the first one finished."""
        tasks = [asyncio.ensure_future(wait) for wait in waits]
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [*tasks, stop]:
                task.cancel()
        return tasks[0] in done and not self._stopping.is_set()

    def code_entries(self) -> dict[str, Entry]:
        """The app's code entries, defaults filled in."""
        return dict(self._code)


class _Leader:
    """What one leadership term does, on the connection that holds the token."""

    def __init__(
        self,
        beat: Beat,
        connection: aio_pika.abc.AbstractRobustConnection,
        leadership: Leadership,
    ) -> None:
        self.beat = beat
        self.app = beat.app
        self.settings = beat.app.settings
        self.names = beat.names
        self.connection = connection
        self.leadership = leadership
        self.publisher = aio.AioPublisher(
            connection, self.settings.broker, publish_timeout=self.settings.publish_timeout
        )
        #: Signs (encrypts) what beat sends, as any producer (docs/security.md).
        self.sealer = sealer_for(self.settings)
        self.changes = Changes(code=beat.code_entries())
        self.plan = Plan()
        self.triggers: list[Trigger] = []
        self.wake = asyncio.Event()
        self._declared: set[str] = set()
        self._bound: set[str] = set()
        self._live = False

    async def lead(self) -> None:
        beat = self.beat
        channel = await self.connection.channel(publisher_confirms=True)
        now = utcnow()
        nonce = history.new_nonce()
        await channel.default_exchange.publish(
            history.marker("marker", beat.node_name, nonce, now), routing_key=self.names.history
        )
        await channel.default_exchange.publish(
            history.change("marker", "", now, nonce=nonce), routing_key=self.names.entries
        )
        reader = await self.connection.channel()
        await reader.set_qos(prefetch_count=history.STREAM_PREFETCH)
        # Replay the runtime changes up to our marker, then keep following them.
        await self._unless_lost(
            history.read_stream(
                reader, self.names.entries, "first", self._on_change(nonce), keep=True
            )
        )
        record = await self._unless_lost(self._read_history(reader, nonce, now))
        log.info("beat leads", node=beat.node_name, entries=len(self.changes.all()))
        beat.leading.set()
        now = utcnow()
        # From here on, changes go straight into the plan (no await in between).
        self._live = True
        missed = self.plan.take_over(self._active(), record, now)
        await self._send(missed, now)
        await self._send_triggers(record, now)
        last_tick = now
        while self.leadership.leading and not beat._stopping.is_set():
            now = utcnow()
            await self._send(self.plan.due(now), now)
            await self._send_triggers(None, now)
            if (now - last_tick).total_seconds() >= self.settings.beat_tick:
                await channel.default_exchange.publish(
                    history.marker("tick", beat.node_name, nonce, now),
                    routing_key=self.names.history,
                )
                last_tick = now
            await self._sleep(now, last_tick)
        log.info("beat stops leading", node=beat.node_name)

    async def _unless_lost(self, work: Coroutine[Any, Any, T]) -> T:
        """Await ``work``, or raise ConnectionError if the connection closes first
        (a stream read would otherwise wait for ever)."""
        task = asyncio.ensure_future(work)
        lost = asyncio.ensure_future(self.leadership.lost.wait())
        try:
            await asyncio.wait([task, lost], return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if not task.done():
            task.cancel()
            raise ConnectionError("the connection closed while reading the beat's record")
        return task.result()

    def _active(self) -> list[tuple[Entry, dt.datetime | None]]:
        return [(with_defaults(e, self.settings), since) for e, since in self.changes.active()]

    async def _sleep(self, now: dt.datetime, last_tick: dt.datetime) -> None:
        wake_at = last_tick + dt.timedelta(seconds=self.settings.beat_tick)
        due = self.plan.next_due()
        if due is not None:
            wake_at = min(wake_at, due)
        seconds = min(MAX_SLEEP, max(0.0, (wake_at - utcnow()).total_seconds()))
        self.wake.clear()
        if self.triggers:
            return
        waits = [self.wake.wait(), self.leadership.lost.wait(), self.beat._stopping.wait()]
        tasks = [asyncio.ensure_future(wait) for wait in waits]
        try:
            await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()

    # -- reading the broker's record -----------------------------------------------------

    def _on_change(self, nonce: str) -> history.Visit:
        marker_seen = False

        async def visit(message: aio_pika.abc.AbstractIncomingMessage) -> bool:
            nonlocal marker_seen
            try:
                record = json.loads(message.body)
            except ValueError:
                log.warning("ignored an undecodable beat entry change")
                return marker_seen
            if not isinstance(record, dict):
                return marker_seen
            if record.get("op") == "marker":
                if record.get("nonce") == nonce:
                    marker_seen = True
                    return True
                return marker_seen
            changed = self.changes.apply(record)
            if isinstance(changed, Trigger):
                self.triggers.append(changed)
            elif changed is not None and self._live:
                self._apply_live(changed)
            self.wake.set()
            return marker_seen

        return visit

    def _apply_live(self, name: str) -> None:
        """An entry changed while leading: (re)activate or deactivate it in the plan."""
        entry = self.changes.entry(name)
        if entry is None or name in self.changes.paused:
            self.plan.remove(name)
            log.info("beat entry off", entry=name)
            return
        since = self.changes.since.get(name) or utcnow()
        self.plan.add(with_defaults(entry, self.settings), max(since, utcnow()))
        log.info("beat entry on", entry=name)

    async def _read_history(
        self, channel: aio_pika.abc.AbstractChannel, nonce: str, now: dt.datetime
    ) -> Record:
        windows = [entry.catch_up_window or 0.0 for entry, _ in self._active()]
        lookback = dt.timedelta(
            seconds=max([self.settings.beat_catch_up_window, *windows])
            + 10 * self.settings.beat_tick
        )
        start = now - lookback
        record = Record()

        async def visit(message: aio_pika.abc.AbstractIncomingMessage) -> bool:
            headers = message.headers or {}
            kind = history.text(headers.get(history.HEADER_KIND))
            at = history.parse_iso(headers.get(history.HEADER_AT))
            if kind == "marker" and history.text(headers.get(history.HEADER_NONCE)) == nonce:
                return True
            if kind == "tick" and at is not None:
                if record.handled_through is None or at > record.handled_through:
                    record.handled_through = at
                return False
            entry = history.text(headers.get(history.HEADER_ENTRY))
            task_id = history.text(headers.get("id"))
            if entry is None or task_id is None:
                return False
            record.sent.add(task_id)
            if (
                at is not None
                and headers.get(history.HEADER_TRIGGER) is None
                and (entry not in record.last_sent or at > record.last_sent[entry])
            ):
                record.last_sent[entry] = at
            return False

        await history.read_stream(channel, self.names.history, start, visit)
        if record.handled_through is None and await self._older_than(channel, start, nonce):
            # Beats ran here, but longer ago than any window: catch up from its start.
            record.handled_through = start
        return record

    async def _older_than(
        self, channel: aio_pika.abc.AbstractChannel, start: dt.datetime, nonce: str
    ) -> bool:
        """Whether the history's first record is older than ``start``."""
        first: list[dt.datetime | None] = []

        async def visit(message: aio_pika.abc.AbstractIncomingMessage) -> bool:
            headers = message.headers or {}
            first.append(history.parse_iso(headers.get(history.HEADER_AT)))
            return True

        await history.read_stream(channel, self.names.history, "first", visit)
        return bool(first) and first[0] is not None and first[0] < start

    # -- sending -------------------------------------------------------------------------

    async def _send_triggers(self, record: Record | None, now: dt.datetime) -> None:
        pending, self.triggers = self.triggers, []
        todo = []
        for trigger in pending:
            entry = self.changes.entry(trigger.name)
            task_id = trigger_id(trigger.name, trigger.request)
            if entry is None or (record is not None and task_id in record.sent):
                continue
            if record is not None and now - trigger.at > dt.timedelta(
                seconds=self.settings.beat_catch_up_window
            ):
                continue  # an old request replayed: its time has passed
            todo.append(
                Occurrence(with_defaults(entry, self.settings), now, task_id, trigger.request)
            )
        await self._send(todo, now)

    async def _send(self, occurrences: list[Occurrence], now: dt.datetime) -> None:
        for start in range(0, len(occurrences), SEND_BATCH):
            if not self.leadership.leading:
                raise ConnectionError("lost leadership while sending")
            batch = occurrences[start : start + SEND_BATCH]
            await asyncio.gather(*(self._publish(occurrence) for occurrence in batch))

    async def _publish(self, occurrence: Occurrence) -> None:
        entry = occurrence.entry
        options = dict(entry.options)
        options.pop("expires", None)
        headers = {
            **dict(options.pop("headers", None) or {}),
            history.HEADER_ENTRY: entry.name,
            history.HEADER_AT: history.iso(occurrence.instant),
            # Sender-selected distribution: RabbitMQ also routes the message to the
            # history stream, then removes this header before delivery.
            "BCC": [self.names.history],
        }
        if occurrence.trigger is not None:
            headers[history.HEADER_TRIGGER] = occurrence.trigger
        call = prepare_call(
            settings=self.settings,
            router=self.app.router,
            reply_to=None,
            **self.app._named_call(
                entry.task,
                list(entry.args),
                dict(entry.kwargs),
                {
                    **options,
                    "task_id": occurrence.task_id,
                    "headers": headers,
                    "expires": occurrence.expires_at,
                },
            ),
        )
        await self._ensure(call)
        message = call.message if self.sealer is None else self.sealer.seal(call.message)
        await self.publisher.publish(message)
        self.beat.sent_count += 1
        if self.beat.record_lateness:
            self.beat.lateness.append((utcnow() - occurrence.instant).total_seconds())
        log.debug(
            "beat sent",
            entry=entry.name,
            at=history.iso(occurrence.instant),
            task_id=occurrence.task_id,
        )

    async def _ensure(self, call: PreparedCall) -> None:
        """Declare the call's destination once; bind the history to a named exchange."""
        if self._declared.issuperset(destination_keys(self.settings, call)):
            targets = []
        else:
            targets = destinations(self.app.router, self.settings, call)
        for target in targets:
            if target.key in self._declared:
                continue
            try:
                await aio.apply_declarations(
                    self.connection,
                    target.declarations,
                    target.mode,
                    management=self.app.management(),
                )
            except TopologyMismatch as exc:
                producer_mismatch(exc, target.key)
            self._declared.add(target.key)
        exchange = call.message.exchange
        if exchange and exchange not in self._bound:
            # BCC routing keys go through the same exchange as the message: on a named
            # exchange the history needs a binding under its own name to receive them.
            channel = await self.connection.channel()
            try:
                stream = await channel.get_queue(self.names.history, ensure=False)
                await stream.bind(exchange, routing_key=self.names.history)
            finally:
                await channel.close()
            self._bound.add(exchange)
