"""Leader election on the broker: a single-active-consumer queue and a token.

Every beat process consumes ``<prefix>.leader`` (single active consumer, so
the broker delivers to one consumer at a time) and publishes one token when it
starts. The process that receives a token and holds it unacked leads; extra
tokens are acked away, so one stays. When the leader's connection closes
(SIGKILL: at once; a network loss: after the missed heartbeats), the broker
requeues the token and delivers it to the next consumer, which leads.

Losing the connection ends leadership: :attr:`Leadership.lost` is set from the
connection's close callback, before any reconnect, and the scheduler stops
publishing on that connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika

__all__ = ["Leadership"]

#: Tokens the leader may hold at once before it acks the extras away.
TOKEN_PREFETCH = 10


class Leadership:
    """Campaign for leadership on ``connection``; :attr:`won` is set when this process leads."""

    def __init__(self, connection: aio_pika.abc.AbstractRobustConnection, queue: str) -> None:
        self._connection = connection
        self._queue = queue
        self.won = asyncio.Event()
        self.lost = asyncio.Event()
        self._token: aio_pika.abc.AbstractIncomingMessage | None = None
        connection.close_callbacks.add(self._on_close)

    def _on_close(self, *_args: Any) -> None:
        self.lost.set()

    async def campaign(self, channel: aio_pika.abc.AbstractChannel) -> None:
        """Join the line of consumers and add one token (confirmed) to the queue."""
        await channel.set_qos(prefetch_count=TOKEN_PREFETCH)
        queue = await channel.get_queue(self._queue, ensure=False)
        await queue.consume(self._on_token)
        await channel.default_exchange.publish(
            aio_pika.Message(b"leader token", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=self._queue,
        )

    async def _on_token(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        if self._token is None:
            self._token = message  # held unacked while this process leads
            self.won.set()
        else:
            await message.ack()  # one token is enough

    @property
    def leading(self) -> bool:
        """Whether this process holds the token on a live connection."""
        return self.won.is_set() and not self.lost.is_set()
