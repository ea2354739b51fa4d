"""Settle each delivery exactly once: ack, requeue, or reject to the DLX."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from amqptasks.logging import get_logger
from amqptasks.transport.aio import cancelled_by_connection

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import aio_pika.abc

log = get_logger(__name__)


class Settlement:
    """Wraps one delivery so it is acked/nacked at most once.

    After a reconnect the delivery tag belongs to a dead channel; settling then
    fails, which is expected (the broker has already put the message back) and
    is logged at debug level.
    """

    __slots__ = ("message", "settled")

    def __init__(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.message = message
        self.settled = False

    async def ack(self) -> None:
        """Acknowledge: the broker forgets the message."""
        await self._settle("ack", self.message.ack)

    async def requeue(self) -> None:
        """Give the message back to the queue, unstarted."""
        await self._settle("requeue", lambda: self.message.nack(requeue=True))

    async def reject(self) -> None:
        """Reject without requeue: the queue's dead-letter exchange takes it."""
        await self._settle("reject", lambda: self.message.reject(requeue=False))

    async def _settle(self, what: str, send: Callable[[], Awaitable[None]]) -> None:
        if self.settled:
            return
        self.settled = True
        # The delivery tag belongs to the channel it came on: aio-pika sends the frame
        # on that channel or fails, never on a channel opened after a reconnect, where
        # the same number would name another message.
        try:
            await send()
        except Exception as exc:  # channel gone: the message will be redelivered
            log.debug("settling failed; the broker will redeliver", action=what, error=str(exc))
        except asyncio.CancelledError:
            # aiormq cancels what waits on a connection it declared dead.
            if not cancelled_by_connection():
                raise
            log.debug("settling failed; the broker will redeliver", action=what, error="lost")
