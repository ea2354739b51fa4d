"""Everything the worker publishes: replies, delayed copies and dead letters (confirmed).

Two publishers, for two kinds of message:

- ``publisher`` sends a message exactly as built, to an exchange and routing key
  that exist (a caller's reply queue, a dead-letter queue);
- ``call_client`` (the app's async producer client) sends a task message along a
  route, declaring the delay levels and hop queues a delayed copy needs first.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from amqptasks import constants
from amqptasks.exceptions import BrokerError
from amqptasks.logging import get_logger
from amqptasks.publishing import PreparedCall
from amqptasks.routing import Route
from amqptasks.topology import delays
from amqptasks.worker.deadletter import dead_letter_message
from amqptasks.worker.outgoing import delayed_copy, result_message

if TYPE_CHECKING:
    from collections.abc import Mapping

    from amqptasks._client import AioClient
    from amqptasks.protocol.envelope import OutgoingMessage
    from amqptasks.protocol.serializers import SerializerInfo
    from amqptasks.routing import Router
    from amqptasks.transport.aio import AioPublisher
    from amqptasks.transport.consumer import Delivery
    from amqptasks.worker.decisions import DeadLetter
    from amqptasks.worker.outcome import Outcome
    from amqptasks.worker.outgoing import ReplyTarget

log = get_logger(__name__)

#: How much of a traceback goes into a dead-letter header.
TRACEBACK_LIMIT = 8000


class Sender:
    """Publishes on behalf of one worker (see the module docstring)."""

    def __init__(
        self,
        *,
        publisher: AioPublisher,
        call_client: AioClient,
        router: Router,
        hostname: str,
        result_serializer: SerializerInfo,
    ) -> None:
        self.publisher = publisher
        self.call_client = call_client
        self.router = router
        self.hostname = hostname
        self.result_serializer = result_serializer

    async def publish(self, message: OutgoingMessage) -> None:
        """Publish ``message`` as it is and wait for the broker's confirm."""
        await self.publisher.publish(message)

    async def reply(self, target: ReplyTarget, outcome: Outcome) -> None:
        """Send ``outcome`` to the caller's reply queue; a vanished queue is only logged."""
        message = result_message(target, outcome, self.result_serializer)
        if self.call_client.sealer is not None:  # signed with the worker's key, if it has one
            message = self.call_client.sealer.sign(message)
        try:
            await self.publisher.publish(message)
        except BrokerError as exc:
            # The client's reply queue is gone (it expired or was deleted): nobody waits.
            log.warning(
                "result not delivered",
                task_id=target.task_id,
                reply_to=target.reply_to,
                error=str(exc),
            )

    async def republish(
        self,
        delivery: Delivery,
        queue: str,
        countdown: float,
        retries: int | None,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        """Send the delivered message back to ``queue`` after ``countdown`` s (confirmed),
        as attempt ``retries`` (None: the same attempt).

        Raises:
            ConfigError: a countdown the delay levels cannot hold.
            BrokerError: the publish failed.
        """
        wait = delays.delay_seconds(countdown)
        outgoing = delayed_copy(delivery, queue, countdown, retries, dict(headers or {}))
        route = Route(constants.DEFAULT_EXCHANGE, queue, self.router.queue(queue))
        await self.call_client.publish(
            PreparedCall(
                outgoing,
                route,
                False,
                delay=wait,
                wait_seconds=countdown,
                prepared_at=time.monotonic(),
            )
        )

    def dead_letter_queue(self, queue: str) -> str | None:
        """The dead-letter queue of ``queue`` (None: it has none)."""
        return self.router.queue(queue).dead_letter_queue

    async def dead_letter(self, delivery: Delivery, queue: str, decision: DeadLetter) -> None:
        """Copy the delivery to ``queue``'s dead-letter queue, saying why (confirmed).

        When the full copy cannot be sent (a header no publisher can encode, say),
        a minimal one is: the body untouched, our reason headers and the original
        headers that are plain strings and numbers.

        Raises:
            Exception: neither copy could be published (the caller rejects the
                delivery to the queue's own dead-letter exchange instead).
        """
        dlq = self.dead_letter_queue(queue)
        assert dlq is not None
        extra: dict[str, Any] = {}
        if decision.traceback:
            extra[constants.HEADER_TRACEBACK] = decision.traceback[-TRACEBACK_LIMIT:]
        if decision.attempts is not None:
            extra[constants.HEADER_ATTEMPTS] = decision.attempts
        original = delivery.headers if isinstance(delivery.headers, dict) else {}
        try:
            await self.publisher.publish(
                self._dead_letter_copy(delivery, queue, dlq, decision, {**original, **extra})
            )
            return
        except BrokerError:
            raise
        except Exception as exc:  # a header that cannot be encoded again, say
            log.warning(
                "dead-letter copy could not be encoded; sending a minimal copy",
                task_id=delivery.correlation_id,
                error=f"{type(exc).__name__}: {exc}",
            )
        plain = {
            key: value
            for key, value in original.items()
            if isinstance(key, str) and type(value) in (str, int, float, bool)
        }
        await self.publisher.publish(
            self._dead_letter_copy(delivery, queue, dlq, decision, {**plain, **extra})
        )

    def _dead_letter_copy(
        self,
        delivery: Delivery,
        queue: str,
        dlq: str,
        decision: DeadLetter,
        headers: Mapping[str, Any],
    ) -> OutgoingMessage:
        error = decision.error
        return dead_letter_message(
            queue=queue,
            dead_letter_queue=dlq,
            body=delivery.body,
            headers=headers,
            content_type=delivery.content_type,
            content_encoding=delivery.content_encoding,
            message_id=delivery.message_id,
            correlation_id=delivery.correlation_id,
            reply_to=delivery.reply_to,
            exchange=delivery.exchange or "",
            routing_key=delivery.routing_key or "",
            reason=decision.reason,
            error=str(error),
            worker=self.hostname,
            exc_type=type(error).__name__,
        )
