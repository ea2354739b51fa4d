"""Revokes that stick: held on the broker in a stream every worker reads.

Celery keeps revoked ids in each worker's memory (and optionally a local file):
a worker that was down when the broadcast went out, or one that starts later,
runs the task anyway. Here a revoke is a record appended to the
``amqptasks.revokes`` stream (confirmed). Each worker reads the stream from its
first record before it consumes any task, then follows it; a call whose id is
revoked is skipped (REVOKED) when it is delivered, also after waiting in the
delay levels. A record holds until its ``expires`` (by default
:data:`DEFAULT_HOLD` seconds, the stream's retention): after that the task could
no longer be waiting anywhere a revoke matters, or the operator said so.

See https://www.rabbitmq.com/docs/streams for offsets and retention.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aio_pika
import aio_pika.abc

from amqptasks.logging import get_logger
from amqptasks.protocol.envelope import OutgoingMessage
from amqptasks.topology.model import Declarations, QueueDeclaration

log = get_logger(__name__)

__all__ = ["DEFAULT_HOLD", "REVOKES_STREAM", "RevokeLog", "revoke_message", "revokes_declarations"]

#: The stream of revoke records.
REVOKES_STREAM = "amqptasks.revokes"
#: Seconds a revoke holds when no ``expires`` is given: the stream's retention (7 days).
DEFAULT_HOLD = 7 * 24 * 3600
#: Records a worker reads ahead (a stream consumer needs a prefetch).
PREFETCH = 200
#: Seconds a starting worker waits to have read every revoke so far.
CATCH_UP_TIMEOUT = 15.0


def revokes_declarations() -> Declarations:
    """The revokes stream."""
    return Declarations(
        queues=(
            QueueDeclaration(
                REVOKES_STREAM,
                durable=True,
                arguments={
                    "x-queue-type": "stream",
                    "x-max-age": "7D",
                    "x-stream-max-segment-size-bytes": 1_000_000,
                },
            ),
        )
    )


def revoke_message(
    task_ids: list[str], *, expires: float | None = None, terminate: bool = False
) -> OutgoingMessage:
    """A record revoking ``task_ids`` until ``expires`` (a UNIX time; default: hold
    :data:`DEFAULT_HOLD` seconds)."""
    now = time.time()
    record = {
        "ids": list(task_ids),
        "at": now,
        "expires": expires if expires is not None else now + DEFAULT_HOLD,
        "terminate": terminate,
    }
    return _record(record)


def _record(record: dict[str, Any]) -> OutgoingMessage:
    return OutgoingMessage(
        exchange="",
        routing_key=REVOKES_STREAM,
        body=json.dumps(record).encode(),
        content_type="application/json",
        content_encoding="utf-8",
        headers={},
        message_id=str(uuid.uuid4()),
    )


class RevokeLog:
    """A worker's view of the revokes stream: every id revoked and not expired."""

    def __init__(self) -> None:
        #: Revoked task id -> UNIX time its revoke ends.
        self.revoked: dict[str, float] = {}
        self._marker: str | None = None
        self._caught_up = asyncio.Event()
        self._channel: aio_pika.abc.AbstractChannel | None = None

    def is_revoked(self, task_id: str) -> bool:
        """Whether a call of ``task_id`` must not run."""
        until = self.revoked.get(task_id)
        if until is None:
            return False
        if until < time.time():
            del self.revoked[task_id]
            return False
        return True

    def add(self, task_ids: list[str], expires: float) -> None:
        """Hold ``task_ids`` revoked until ``expires`` (here only, not on the broker)."""
        for task_id in task_ids:
            self.revoked[task_id] = max(expires, self.revoked.get(task_id, 0.0))

    def ids(self) -> list[str]:
        """The ids revoked now."""
        now = time.time()
        return [task_id for task_id, until in self.revoked.items() if until >= now]

    async def follow(self, connection: aio_pika.abc.AbstractRobustConnection) -> None:
        """Read the stream from its start and keep following it; returns once every
        record written before now was read (or after :data:`CATCH_UP_TIMEOUT`)."""
        channel = self._channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        stream = await channel.get_queue(REVOKES_STREAM, ensure=False)
        # A marker of our own, appended now: once it is read back, so is everything before.
        self._marker = str(uuid.uuid4())
        await channel.default_exchange.publish(
            aio_pika.Message(json.dumps({"marker": self._marker}).encode()),
            REVOKES_STREAM,
        )
        await stream.consume(self._on_record, arguments={"x-stream-offset": "first"})
        try:
            await asyncio.wait_for(self._caught_up.wait(), CATCH_UP_TIMEOUT)
        except (asyncio.TimeoutError, TimeoutError):
            log.warning("revokes not all read yet; serving anyway", stream=REVOKES_STREAM)

    async def _on_record(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()
        try:
            record = json.loads(message.body)
        except ValueError:
            log.warning("unreadable revoke record skipped", stream=REVOKES_STREAM)
            return
        if not isinstance(record, dict):
            return
        if record.get("marker") is not None:
            if record["marker"] == self._marker:
                self._caught_up.set()
            return
        ids = record.get("ids")
        expires = record.get("expires")
        if isinstance(ids, list) and isinstance(expires, int | float) and expires > time.time():
            self.add([str(i) for i in ids], float(expires))

    async def close(self) -> None:
        """Stop following."""
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except Exception as exc:
                log.debug("revokes channel close failed", error=str(exc))
