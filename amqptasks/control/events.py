"""Celery's events: the dictionaries Flower and ``celery events`` read, and how they are sent.

An event is a JSON object with a ``type`` (``task-succeeded``, ``worker-heartbeat``
...), the sender's ``hostname``, ``pid``, ``utcoffset``, a ``timestamp`` and a
Lamport ``clock``, plus the fields of its type, published to the ``celeryev``
topic exchange with the type as routing key, dashes made dots
(``task.succeeded``), as ``celery.events.dispatcher.EventDispatcher`` does.

Events are sent without ``mandatory`` and without waiting for a confirm: an
exchange nobody listens to drops them, and a lost event never holds up a task.

A worker's task events go in batches, as a Celery worker with an event loop
sends them (its dispatcher's ``buffer_group=["task"]``): one message with
routing key ``task.multi`` whose body is a JSON *list* of events, in order.
Celery's ``EventReceiver`` (Flower, ``celery events``) and ``amqptasks events``
unpack such lists (:func:`events_in`). Worker events (``worker-heartbeat`` ...)
go alone, at once.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import time
import uuid
from typing import Any

import orjson

from amqptasks import __version__
from amqptasks.protocol.envelope import OutgoingMessage
from amqptasks.topology.model import Exchange

__all__ = [
    "EVENT_EXCHANGE",
    "SOFTWARE_INFO",
    "EventClock",
    "EventStamp",
    "encode_events",
    "event_message",
    "events_in",
    "events_message",
    "make_event",
    "utcoffset",
]

#: Celery's event exchange (``event_exchange`` setting), topic, durable.
EVENT_EXCHANGE = Exchange("celeryev", "topic")
#: What a worker says it runs (``worker-*`` events; Flower shows them).
SOFTWARE_INFO = {
    "sw_ident": "py-amqptasks",
    "sw_ver": __version__,
    "sw_sys": platform.system(),
}
#: Events expire unread after this long in a monitor's queue (Celery's default, 60 min).
TRANSIENT = 1


class EventClock:
    """A Lamport clock: forwarded for every event sent, adjusted by the ones read.

    ``next(clock.counter)`` forwards it too, with no method call (a worker with ``-E``
    stamps three events per call).
    """

    __slots__ = ("counter",)

    def __init__(self) -> None:
        self.counter = itertools.count(1)

    def forward(self) -> int:
        """The next value."""
        return next(self.counter)

    @property
    def value(self) -> int:
        """The clock now. Reading it moves it on by one, as sending does, so that an event
        sent later still carries a larger value."""
        return next(self.counter)

    def adjust(self, other: int) -> None:
        """Move past ``other`` (a clock value seen in a message)."""
        if other >= next(self.counter):
            self.counter = itertools.count(other + 1)


def encode_events(body: Any) -> bytes:
    """An event or a batch of them as compact JSON; what JSON cannot hold goes as its repr.

    orjson rather than the json module: a worker with ``-E`` encodes three events per
    call, and the json module's C encoder spends about twelve times as long on them.
    """
    try:
        return orjson.dumps(body, default=repr)
    except orjson.JSONEncodeError:  # an integer past 64 bits, say: the json module takes it
        return _JSON.encode(body).encode()


_JSON = json.JSONEncoder(default=repr, separators=(",", ":"))

#: Seconds :func:`utcoffset` keeps its answer (every event carries it; DST changes are rare).
UTCOFFSET_TTL = 60.0
_utcoffset: tuple[float, int] = (-1.0, 0)  # (monotonic expiry, value)


def utcoffset() -> int:
    """Hours west of UTC, as Celery's ``celery.utils.time.utcoffset`` gives it."""
    global _utcoffset
    now = time.monotonic()
    if now < _utcoffset[0]:
        return _utcoffset[1]
    if time.localtime().tm_isdst and time.daylight:
        value = time.altzone // 3600
    else:
        value = time.timezone // 3600
    _utcoffset = (now + UTCOFFSET_TTL, value)
    return value


#: This process's id, read once (and again in a forked child): ``os.getpid()`` is a
#: system call, and every event carries the pid.
_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


class EventStamp:
    """What every event of one sender carries, as Celery's dispatcher adds it:
    ``hostname``, ``utcoffset``, ``pid`` (together in :attr:`head`), the Lamport
    ``clock``, a ``timestamp`` and the ``type``.

    The UTC offset and the process id are read when it is made and again at each
    :meth:`refresh` (a worker refreshes its stamp as it sends each batch): a worker
    with ``-E`` stamps three events per call, each ``dict(stamp.head, clock=...,
    ...)``, one call.
    """

    __slots__ = ("clock", "head", "hostname")

    def __init__(self, hostname: str, clock: EventClock) -> None:
        self.hostname = hostname
        self.clock = clock
        self.head: dict[str, Any] = {}
        self.refresh()

    def refresh(self) -> None:
        """Read the UTC offset (it changes with daylight saving) and the process id again."""
        self.head = {"hostname": self.hostname, "utcoffset": utcoffset(), "pid": _pid}

    def event(
        self, type_: str, timestamp: float | None = None, task_id: str | None = None
    ) -> dict[str, Any]:
        """A new event of ``type_`` dated ``timestamp`` (None: now), the clock forwarded,
        with ``task_id`` as its ``uuid`` if given (a task event); the caller adds the
        other fields of its type."""
        event = dict(
            self.head,
            clock=next(self.clock.counter),
            timestamp=time.time() if timestamp is None else timestamp,
            type=type_,
        )
        if task_id is not None:
            event["uuid"] = task_id
        return event


def make_event(type_: str, hostname: str, clock: EventClock, **fields: Any) -> dict[str, Any]:
    """The event of ``type_`` sent by ``hostname``, with Celery's common fields."""
    event = EventStamp(hostname, clock).event(type_)
    return {**fields, **event}


def event_message(event: dict[str, Any]) -> OutgoingMessage:
    """``event`` as a message to the event exchange (JSON, transient)."""
    return _message(str(event["type"]).replace("-", "."), event, event["hostname"])


def events_message(events: list[dict[str, Any]]) -> OutgoingMessage:
    """Several events of one group (``task-*``) as one message, as Celery's dispatcher
    flushes its buffer: routing key ``<group>.multi``, the body a JSON list."""
    if len(events) == 1:
        return event_message(events[0])
    group = str(events[0]["type"]).split("-", 1)[0]
    return _message(f"{group}.multi", events, events[0]["hostname"])


def events_in(body: Any) -> list[dict[str, Any]]:
    """The events of a decoded message body: one event, or a batch (a list)."""
    if isinstance(body, dict):
        return [body]
    if isinstance(body, list):
        return [event for event in body if isinstance(event, dict)]
    return []


def _message(routing_key: str, body: Any, hostname: str) -> OutgoingMessage:
    return OutgoingMessage(
        exchange=EVENT_EXCHANGE.name,
        routing_key=routing_key,
        body=encode_events(body),
        content_type="application/json",
        content_encoding="utf-8",
        headers={"hostname": hostname},
        message_id=str(uuid.uuid4()),
        delivery_mode=TRANSIENT,
    )
