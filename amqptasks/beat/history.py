"""Where the beat keeps its state on the broker, and how it is read back.

Three queues per vhost (``<prefix>`` is the ``beat_prefix`` setting):

``<prefix>.leader``
    A durable classic queue with single active consumer: every beat process
    consumes it, the broker delivers to one at a time, and the one holding the
    token message (unacked) leads. When its connection dies the token goes
    back to the queue and on to the next consumer.
``<prefix>.history``
    A stream. Every task message the leader sends is routed here too by the
    same publish (its ``BCC`` header, which RabbitMQ strips before delivery),
    so the record and the message cannot diverge; leaders also write
    "handled through" ticks and a marker when they take over.
``<prefix>.entries``
    A stream of changes to runtime entries (add, remove, pause, resume,
    trigger), replayed whole by each new leader.

See https://www.rabbitmq.com/docs/streams (offsets, retention),
https://www.rabbitmq.com/docs/consumers#single-active-consumer and
https://www.rabbitmq.com/docs/sender-selected.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika

__all__ = ["HEADER_AT", "HEADER_ENTRY", "HEADER_KIND", "Names", "read_stream"]

#: Header naming the entry of a task message sent by the beat.
HEADER_ENTRY = "x-amqptasks-beat-entry"
#: Header with the UTC instant (ISO 8601) of the occurrence, tick or marker.
HEADER_AT = "x-amqptasks-beat-at"
#: Header of a manual trigger: the trigger request's id.
HEADER_TRIGGER = "x-amqptasks-beat-trigger"
#: Header of the leader's own records: ``tick`` or ``marker``.
HEADER_KIND = "x-amqptasks-beat"
#: Header naming the leader (its node name) on ticks and markers.
HEADER_LEADER = "x-amqptasks-beat-leader"
#: Header with a marker's nonce.
HEADER_NONCE = "x-amqptasks-beat-nonce"

#: Retention of the history stream: older segments are dropped (catch-up windows
#: and ``beat status`` look back far less).
HISTORY_MAX_AGE = "7D"
#: Segment size of the history: retention drops whole segments.
SEGMENT_BYTES = 8 * 1024 * 1024
#: Messages a stream consumer may hold unacked (streams require a prefetch).
STREAM_PREFETCH = 1000


@dataclass(frozen=True)
class Names:
    """The beat's queue names under ``prefix``."""

    prefix: str

    @property
    def leader(self) -> str:
        """The single-active-consumer queue whose token marks the leader."""
        return f"{self.prefix}.leader"

    @property
    def history(self) -> str:
        """The stream of sent occurrences, ticks and markers."""
        return f"{self.prefix}.history"

    @property
    def entries(self) -> str:
        """The stream of runtime entry changes."""
        return f"{self.prefix}.entries"


async def declare(channel: aio_pika.abc.AbstractChannel, names: Names) -> None:
    """Declare the three queues (idempotent; all durable, none needs global QoS)."""
    await channel.declare_queue(
        names.leader, durable=True, arguments={"x-single-active-consumer": True}
    )
    await channel.declare_queue(
        names.history,
        durable=True,
        arguments={
            "x-queue-type": "stream",
            "x-max-age": HISTORY_MAX_AGE,
            "x-stream-max-segment-size-bytes": SEGMENT_BYTES,
        },
    )
    await channel.declare_queue(
        names.entries,
        durable=True,
        arguments={"x-queue-type": "stream", "x-stream-max-segment-size-bytes": SEGMENT_BYTES},
    )


def iso(instant: dt.datetime) -> str:
    """``instant`` as ISO 8601 UTC with microseconds (how records carry instants)."""
    return instant.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


def parse_iso(value: object) -> dt.datetime | None:
    """Read :func:`iso` back (None for a missing or bad value)."""
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def text(value: object) -> str | None:
    """A header value as text (AMQP long strings may arrive as bytes)."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


def new_nonce() -> str:
    """A fresh marker id."""
    return uuid.uuid4().hex


def marker(kind: str, leader: str, nonce: str, now: dt.datetime) -> aio_pika.Message:
    """A leader's own record (``tick`` or ``marker``) for the history stream."""
    return aio_pika.Message(
        b"",
        headers={
            HEADER_KIND: kind,
            HEADER_LEADER: leader,
            HEADER_NONCE: nonce,
            HEADER_AT: iso(now),
        },
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def change(op: str, name: str, now: dt.datetime, **fields: Any) -> aio_pika.Message:
    """A record of the entries stream: ``op`` (add, remove, pause, resume, trigger,
    marker) on entry ``name`` at ``now``."""
    body = {"op": op, "name": name, "at": iso(now), "id": new_nonce(), **fields}
    return aio_pika.Message(
        json.dumps(body).encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


#: Called with each message read from a stream; True stops the reading.
Visit = Callable[["aio_pika.abc.AbstractIncomingMessage"], Awaitable[bool]]


async def read_stream(
    channel: aio_pika.abc.AbstractChannel,
    queue: str,
    offset: str | dt.datetime | int,
    visit: Visit,
    *,
    keep: bool = False,
) -> str | None:
    """Consume stream ``queue`` from ``offset`` until ``visit`` returns True.

    With ``keep`` the consumer stays (for live changes; its tag is returned),
    else it is cancelled when ``visit`` says stop.
    """
    stream = await channel.get_queue(queue, ensure=False)
    done = asyncio.get_running_loop().create_future()
    stopped = False

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal stopped
        await message.ack()
        if stopped and not keep:
            return
        try:
            finished = await visit(message)
        except Exception as exc:  # surfaced to the reader, not lost in a callback
            if not done.done():
                done.set_exception(exc)
            return
        if finished and not done.done():
            stopped = True
            done.set_result(None)

    tag = await stream.consume(on_message, arguments={"x-stream-offset": offset})
    try:
        await done
    except BaseException:
        await stream.cancel(tag)
        raise
    if keep:
        return tag
    await stream.cancel(tag)
    return None
