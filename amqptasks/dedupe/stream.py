"""The claims stream: every worker appends its claims and reads everyone's, in one order.

A worker about to run a call that carries a publish id appends a claim
``{id, publish, at, by, claim}`` to the ``amqptasks.claims`` stream (confirmed),
then reads the stream until its own claim comes back: by then it has read every
claim appended before it, and the first claim of the task id in the stream's
order decides which publish runs (:class:`~amqptasks.dedupe.book.ClaimBook`).
Reading starts ``window`` seconds back, so a worker that (re)starts knows the
claims of the window before it decides anything.

See https://www.rabbitmq.com/docs/streams for offsets and retention.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from amqptasks.logging import get_logger
from amqptasks.protocol.envelope import OutgoingMessage
from amqptasks.topology.model import Declarations, QueueDeclaration
from amqptasks.transport import aio

if TYPE_CHECKING:
    import aio_pika.abc

    from amqptasks.config import BrokerURL
    from amqptasks.dedupe.book import ClaimBook

__all__ = ["CLAIMS_STREAM", "ClaimStream", "claims_declarations", "open_stream"]

log = get_logger(__name__)

#: The stream of claims.
CLAIMS_STREAM = "amqptasks.claims"
#: The longest window: the stream keeps a day of claims (and at most 500 MB).
MAX_WINDOW = 86400.0
#: Records a worker reads ahead (a stream consumer needs a prefetch).
PREFETCH = 500
#: Tries to open the stream, ``OPEN_BACKOFF`` x n seconds apart.
OPEN_ATTEMPTS = 3
OPEN_BACKOFF = 0.5
#: Seconds a claim may take to come back (the first one reads the whole window).
CLAIM_TIMEOUT = 60.0


def claims_declarations() -> Declarations:
    """The claims stream (the same arguments for every window, so any worker may declare it)."""
    return Declarations(
        queues=(
            QueueDeclaration(
                CLAIMS_STREAM,
                durable=True,
                arguments={
                    "x-queue-type": "stream",
                    "x-max-age": "1D",
                    "x-max-length-bytes": 500_000_000,
                    "x-stream-max-segment-size-bytes": 8_000_000,
                },
            ),
        )
    )


class ClaimStream:
    """One worker's link to the claims stream: :meth:`claim` appends and waits for the answer."""

    def __init__(self, book: ClaimBook, hostname: str) -> None:
        self.book = book
        self.hostname = hostname
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._publisher: aio.AioPublisher | None = None

    async def open(self, url: BrokerURL, *, publish_timeout: float) -> None:
        """Connect, declare the stream and follow it from ``window`` seconds ago."""
        connection = self._connection = await aio.connect(
            url, f"amqptasks worker {self.hostname} (claims)", log_outages=False
        )
        await aio.apply_declarations(connection, claims_declarations(), "declare", management=None)
        self._publisher = aio.AioPublisher(connection, url, publish_timeout=publish_timeout)
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        stream = await channel.get_queue(CLAIMS_STREAM, ensure=False)
        since = dt.datetime.fromtimestamp(time.time() - self.book.window, dt.timezone.utc)
        await stream.consume(self._on_record, arguments={"x-stream-offset": since})

    async def claim(self, task_id: str, publish_id: str) -> str | None:
        """Claim ``task_id`` for ``publish_id``; the publish id that runs it (the first claim).

        Raises:
            BrokerError: the claim was not confirmed.
            TimeoutError: it did not come back within :data:`CLAIM_TIMEOUT` seconds.
        """
        assert self._publisher is not None, "open() first"
        nonce = uuid.uuid4().hex
        record = {
            "id": task_id,
            "publish": publish_id,
            "at": time.time(),
            "by": self.hostname,
            "claim": nonce,
        }
        back = self._waiting[nonce] = asyncio.get_running_loop().create_future()
        try:
            await self._publisher.publish(
                OutgoingMessage(
                    exchange="",
                    routing_key=CLAIMS_STREAM,
                    body=json.dumps(record).encode(),
                    content_type="application/json",
                    content_encoding="utf-8",
                    headers={},
                    message_id=nonce,
                )
            )
            await asyncio.wait_for(back, CLAIM_TIMEOUT)
        finally:
            self._waiting.pop(nonce, None)
        return self.book.winner(task_id)

    async def _on_record(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()
        record = _parse(message.body)
        if record is None:
            log.warning("unreadable claim skipped", stream=CLAIMS_STREAM)
            return
        task_id, publish_id, at, nonce = record
        self.book.add(task_id, publish_id, at)
        back = self._waiting.get(nonce)
        if back is not None and not back.done():
            back.set_result(None)

    async def close(self) -> None:
        """Stop following and disconnect."""
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            try:
                await connection.close()
            except Exception as exc:
                log.debug("claims connection close failed", error=str(exc))


async def open_stream(
    book: ClaimBook, hostname: str, url: BrokerURL, *, publish_timeout: float
) -> ClaimStream:
    """A :class:`ClaimStream` opened, tried :data:`OPEN_ATTEMPTS` times.

    A stream that another worker declared a moment ago may not take consumers yet
    (RabbitMQ then closes the connection: ``stream_not_found``); a new try succeeds.

    Raises:
        Exception: the last try's error.
    """
    for attempt in range(1, OPEN_ATTEMPTS + 1):
        stream = ClaimStream(book, hostname)
        try:
            await stream.open(url, publish_timeout=publish_timeout)
        except Exception:
            await stream.close()
            if attempt == OPEN_ATTEMPTS:
                raise
            await asyncio.sleep(OPEN_BACKOFF * attempt)
        else:
            return stream
    raise AssertionError("unreachable")


def _parse(body: bytes) -> tuple[str, str, float, str] | None:
    """A claim's ``(task id, publish id, at, nonce)``; None when it is not a claim."""
    try:
        record: Any = json.loads(body)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    fields = (record.get("id"), record.get("publish"), record.get("claim"))
    at = record.get("at")
    if not all(isinstance(value, str) and value for value in fields):
        return None
    if isinstance(at, bool) or not isinstance(at, int | float):
        return None
    return str(fields[0]), str(fields[1]), float(at), str(fields[2])
