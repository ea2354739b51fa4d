"""The broker-held join of a chord: no result store, no polling.

Each chord has two durable queues with ``x-expires`` (names from
:mod:`amqptasks.topology.names`), made before any member is sent:

- ``amqptasks.chord.<id>.results``: each member's worker leaves one *part* there
  (its result or its failure, with its index), published with a confirm before
  the member's own delivery is acked;
- ``amqptasks.chord.<id>.token``: one message, the right to join.

After leaving its part, a worker looks at the results queue's message count; when
it reaches the chord's size it takes the token with ``basic.get`` (unacked: if the
worker dies, the broker gives the token and every part it took back). Holding the
token, it takes every part (a duplicate left by a member that ran twice is acked
away). With every index present it sends the body once and deletes both queues;
with some missing it lets all go and looks at the count again, so the part that
arrived meanwhile is never left without a joiner.

The body is published with ``BCC`` naming the results queue: the broker puts a copy
there in the same publish, so a joiner that dies after sending the body but before
deleting the queues leaves a mark the next joiner sees (and only cleans up).
See https://www.rabbitmq.com/docs/sender-selected.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiormq.exceptions
import pika

from amqptasks import constants
from amqptasks.protocol.envelope import OutgoingMessage
from amqptasks.results.meta import ResultMeta, decode_result
from amqptasks.topology import model, names
from amqptasks.transport import errors
from amqptasks.transport._pika import every_node_parameters

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import aio_pika

    from amqptasks.config import Settings

#: Seconds a chord's queues stay once nobody looks at them (a chord abandoned half-way).
CHORD_EXPIRES = 7 * 24 * 3600.0
#: Header of a part: the member's index in the chord.
PART_HEADER = f"{constants.HEADER_PREFIX}chord-part"
#: Header of the token message.
TOKEN_HEADER = f"{constants.HEADER_PREFIX}chord-token"
#: How many times a joiner looks again when parts arrive while it holds the token.
MAX_ROUNDS = 50


def _token(chord_id: str) -> OutgoingMessage:
    return OutgoingMessage(
        exchange="",
        routing_key=names.chord_token(chord_id),
        body=b"",
        content_type="application/octet-stream",
        content_encoding="binary",
        headers={TOKEN_HEADER: chord_id},
        message_id=chord_id,
    )


def open_chord_sync(settings: Settings, chord_id: str) -> None:
    """Make chord ``chord_id``'s queues and put its token in (pika, confirmed).

    Raises:
        BrokerError: the broker refused or could not be reached.
    """
    url = settings.broker
    try:
        connection = pika.BlockingConnection(every_node_parameters(url, "amqptasks chord"))
    except Exception as exc:
        raise errors.connect_error(exc, url) from exc
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for name in (names.chord_results(chord_id), names.chord_token(chord_id)):
            declared = model.chord_queue(name, CHORD_EXPIRES)
            channel.queue_declare(name, durable=True, arguments=dict(declared.arguments))
        token = _token(chord_id)
        channel.basic_publish(
            "",
            token.routing_key,
            token.body,
            pika.BasicProperties(
                headers=token.headers, delivery_mode=constants.PERSISTENT, message_id=chord_id
            ),
            mandatory=True,
        )
    finally:
        if connection.is_open:
            connection.close()


async def open_chord_async(settings: Settings, chord_id: str) -> None:
    """Async :func:`open_chord_sync` (run in a thread: one short connection per chord)."""
    await asyncio.to_thread(open_chord_sync, settings, chord_id)


async def open_chord_on(
    connection: aio_pika.abc.AbstractConnection,
    publish: Callable[[OutgoingMessage], Awaitable[None]],
    chord_id: str,
) -> None:
    """:func:`open_chord_sync` on a worker's connection (a chord sent as a chain step)."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        for name in (names.chord_results(chord_id), names.chord_token(chord_id)):
            declared = model.chord_queue(name, CHORD_EXPIRES)
            await channel.declare_queue(name, durable=True, arguments=dict(declared.arguments))
    finally:
        await channel.close()
    await publish(_token(chord_id))


def part_message(
    chord_id: str, index: int, body: bytes, content_type: str, content_encoding: str, task_id: str
) -> OutgoingMessage:
    """A member's part for the chord's results queue (persistent)."""
    return OutgoingMessage(
        exchange="",
        routing_key=names.chord_results(chord_id),
        body=body,
        content_type=content_type,
        content_encoding=content_encoding,
        headers={PART_HEADER: index},
        message_id=task_id,
    )


@dataclass
class Part:
    """One member's outcome, as found in the results queue."""

    index: int
    meta: ResultMeta


@dataclass
class Claim:
    """The token is ours: either every part (in order) or the mark of a join already done."""

    channel: aio_pika.abc.AbstractChannel
    chord_id: str
    parts: list[Part] = field(default_factory=list)
    #: The body was sent already (its copy is in the results queue): only clean up.
    done: bool = False

    @property
    def results_queue(self) -> str:
        """Where the body's BCC copy goes."""
        return names.chord_results(self.chord_id)

    async def finish(self) -> None:
        """Delete the chord's queues (the token and parts with them)."""
        await self.channel.queue_delete(names.chord_results(self.chord_id))
        await self.channel.queue_delete(names.chord_token(self.chord_id))

    async def close(self) -> None:
        """Let go: what is not deleted or acked goes back to its queue."""
        if not self.channel.is_closed:
            await self.channel.close()


def _missing(exc: BaseException) -> bool:
    return isinstance(exc, aiormq.exceptions.ChannelNotFoundEntity)


async def claim(
    connection: aio_pika.abc.AbstractConnection,
    chord_id: str,
    size: int,
    decode: Callable[[bytes, str | None], Any],
) -> Claim | None:
    """Take chord ``chord_id``'s join if it is complete and nobody else holds it.

    Returns None when it is not complete (as far as the parts waiting say), is
    being joined by someone else, or is over (its queues are gone). The caller
    of a returned claim must :meth:`Claim.close` it.
    """
    for _ in range(MAX_ROUNDS):
        channel = await connection.channel(publisher_confirms=False)
        kept = False
        try:
            results = await channel.declare_queue(names.chord_results(chord_id), passive=True)
            ready = results.declaration_result.message_count or 0
            if ready < size:
                return None
            token_queue = await channel.declare_queue(names.chord_token(chord_id), passive=True)
            token = await token_queue.get(no_ack=False, fail=False)
            if token is None:
                return None  # someone else holds it; they look again after letting go
            taken = Claim(channel, chord_id)
            seen: dict[int, Part] = {}
            while True:
                message = await results.get(no_ack=False, fail=False)
                if message is None:
                    break
                index = (message.headers or {}).get(PART_HEADER)
                if index is None:
                    taken.done = True  # the body's BCC copy
                    continue
                if not isinstance(index, int) or index in seen or not 0 <= index < size:
                    await message.ack()  # a member that ran twice; keep the first
                    continue
                seen[index] = Part(index, decode_result(decode(message.body, message.content_type)))
            if taken.done or len(seen) == size:
                taken.parts = [seen[i] for i in sorted(seen)]
                kept = True
                return taken
        except aiormq.exceptions.AMQPError as exc:
            if _missing(exc):
                return None  # over: its queues were deleted (or expired)
            raise
        finally:
            if not kept and not channel.is_closed:
                await channel.close()  # token and parts go back to their queues
    return None
