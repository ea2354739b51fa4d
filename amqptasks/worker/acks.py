"""Settle each delivery exactly once: ack, requeue, or reject to the DLX."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amqptasks.logging import get_logger

if TYPE_CHECKING:
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
        if self.settled:
            return
        self.settled = True
        try:
            await self.message.ack()
        except Exception as exc:  # channel gone: the message will be redelivered
            log.debug("ack failed; the broker will redeliver", error=str(exc))

    async def requeue(self) -> None:
        """Give the message back to the queue, unstarted."""
        if self.settled:
            return
        self.settled = True
        try:
            await self.message.nack(requeue=True)
        except Exception as exc:
            log.debug("requeue failed; the broker will redeliver", error=str(exc))

    async def reject(self) -> None:
        """Reject without requeue: the queue's dead-letter exchange takes it."""
        if self.settled:
            return
        self.settled = True
        try:
            await self.message.reject(requeue=False)
        except Exception as exc:
            log.debug("reject failed; the broker will redeliver", error=str(exc))
