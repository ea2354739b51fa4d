"""The worker's consumer: pika on the running asyncio loop, reconnecting by itself.

pika's protocol code costs a quarter of aio-pika's per delivery (about 42 vs
150 µs of CPU for consume and ack, ``tests/bench``), and a worker's hot path is
exactly that, so the worker consumes through pika's ``AsyncioConnection`` on
its own event loop: heartbeats and acks are still never stuck behind a task.

:class:`ConsumerLink` owns that connection. Each queue gets a channel with its
prefetch (per-consumer QoS: quorum queues do not support global QoS). When the
connection is lost the link reconnects with :class:`Backoff`, logging one
warning per outage and one line when it is back, and consumes every queue
again, calling ``prepare`` first (the worker declares the queue's topology
there, so a queue deleted meanwhile is back before consuming resumes). A
consumer the broker cancels (its queue was deleted) or a channel it closes
(consumer timeout) is restored the same way, alone.

With a cluster URL each attempt tries the nodes in turn
(:class:`~amqptasks.transport.failover.NodeRing`), so a worker whose node died
consumes from another one at once.

Deliveries of a lost channel cannot be settled any more (the broker put them
back): :class:`ConsumerChannel` says so, and a settlement for it is dropped
rather than sent on another channel, where its delivery tag means another
message.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import TYPE_CHECKING, Any, TypeAlias

import pika.channel
import pika.exceptions
import pika.frame
import pika.spec

from amqptasks.exceptions import AmqptasksError, BrokerError, ConnectionLost
from amqptasks.logging import get_logger
from amqptasks.transport import _pika, errors
from amqptasks.transport.failover import NodeRing
from amqptasks.transport.reconnect import Backoff, Outages, missed_heartbeats

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from amqptasks.config import BrokerURL

log = get_logger(__name__)

SettlementMethod: TypeAlias = pika.spec.Basic.Ack | pika.spec.Basic.Nack | pika.spec.Basic.Reject
#: Seconds a basic.cancel may take at shutdown.
CANCEL_TIMEOUT = 2.0


class ConsumerChannel:
    """One open channel of a :class:`ConsumerLink`; delivery tags are per channel."""

    __slots__ = ("_channel", "_connection", "number")

    def __init__(self, channel: pika.channel.Channel, connection: _pika.AsyncioConnection) -> None:
        self._channel = channel
        self._connection = connection
        self.number: int = channel.channel_number

    @property
    def is_closed(self) -> bool:
        """True once the channel (or its connection) closed: its deliveries went back."""
        return not self._channel.is_open or not self._connection.is_open

    def write(self, methods: Sequence[SettlementMethod]) -> None:
        """Send settlement methods on this channel, in order, in one write."""
        number = self.number
        data = b"".join(pika.frame.Method(number, method).marshal() for method in methods)
        self._connection.write_frames(data, len(methods))

    @property
    def unsent(self) -> int:
        """Bytes of this connection not handed to the kernel yet (0 once closed)."""
        if not self._connection.is_open:
            return 0
        return self._connection.write_buffer_size()


class Delivery:
    """A message delivered to a consumer: body, properties and delivery fields."""

    __slots__ = (
        "body",
        "channel",
        "consumer_tag",
        "content_encoding",
        "content_type",
        "correlation_id",
        "delivery_tag",
        "exchange",
        "headers",
        "message_id",
        "priority",
        "queue",
        "redelivered",
        "reply_to",
        "routing_key",
    )

    def __init__(
        self,
        channel: ConsumerChannel,
        queue: str,
        method: pika.spec.Basic.Deliver,
        properties: pika.spec.BasicProperties,
        body: bytes,
    ) -> None:
        self.channel = channel
        #: The queue it was consumed from.
        self.queue = queue
        self.body = body
        self.consumer_tag: str = method.consumer_tag
        self.delivery_tag: int = method.delivery_tag
        self.redelivered: bool = method.redelivered
        self.exchange: str = method.exchange
        self.routing_key: str = method.routing_key
        self.headers: dict[str, Any] | None = properties.headers
        self.content_type: str | None = properties.content_type
        self.content_encoding: str | None = properties.content_encoding
        self.correlation_id: str | None = properties.correlation_id
        self.reply_to: str | None = properties.reply_to
        self.message_id: str | None = properties.message_id
        self.priority: int | None = properties.priority


class _Calls:
    """Awaitable calls on one pika channel: a channel that closes fails what waits on it."""

    def __init__(
        self, channel: pika.channel.Channel, queue: str, on_close: Callable[[BrokerError], None]
    ) -> None:
        self.channel = channel
        self._queue = queue
        self._on_closed = on_close
        self._pending: set[asyncio.Future[Any]] = set()
        channel.add_on_close_callback(self._on_close)

    @property
    def is_open(self) -> bool:
        return bool(self.channel.is_open)

    async def call(self, start: Callable[[Callable[[Any], None]], object]) -> Any:
        """Run ``start(done)``, then wait until pika calls ``done(frame)``; return the frame."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.add(future)

        def done(frame: Any) -> None:
            if not future.done():
                future.set_result(frame)

        try:
            start(done)
            return await future
        finally:
            self._pending.discard(future)

    def _on_close(self, _channel: pika.channel.Channel, reason: BaseException) -> None:
        failure = _channel_error(reason, self._queue)
        for future in self._pending:
            if not future.done():
                future.set_exception(failure)
        self._pending.clear()
        self._on_closed(failure)


def _channel_error(reason: BaseException, queue: str) -> BrokerError:
    if isinstance(reason, pika.exceptions.ChannelClosedByBroker):
        return errors.channel_error(reason.reply_code, reason.reply_text, f"queue {queue!r}")
    return ConnectionLost(f"channel of queue {queue!r} closed: {reason}")


#: Called on the loop for each delivery of a queue; must not block.
DeliveryCallback: TypeAlias = "Callable[[Delivery], None]"


class _Consumer:
    """A queue the link consumes, its callback and its current channel."""

    __slots__ = ("callback", "calls", "prefetch", "queue", "restoring", "tag")

    def __init__(self, queue: str, prefetch: int, callback: DeliveryCallback) -> None:
        self.queue = queue
        self.prefetch = prefetch
        self.callback = callback
        self.calls: _Calls | None = None
        #: The consumer tag while the broker delivers; None while it does not.
        self.tag: str | None = None
        self.restoring: asyncio.Task[None] | None = None


class ConsumerLink:
    """Consumes queues over one pika connection on the running loop (module docstring).

    Args:
        url: The broker.
        connection_name: Shown in the management UI.
        on_delivery: Called on the loop for each delivery of a queue consumed
            without a callback of its own; must not block.
        prepare: Awaited before a queue is consumed again after an outage, a
            cancel or a closed channel (not before the first :meth:`consume`).

    """

    backoff = Backoff()

    def __init__(
        self,
        url: BrokerURL,
        connection_name: str,
        on_delivery: DeliveryCallback,
        *,
        prepare: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.url = url
        self._name = connection_name
        self._ring = NodeRing(url)
        self._on_delivery = on_delivery
        self._prepare = prepare
        self._consumers: dict[str, _Consumer] = {}
        self._connection: _pika.AsyncioConnection | None = None
        self._closing = False
        self._closed: asyncio.Future[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._outages = Outages(url.where)

    # -- connection ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the connection is open (consumers may still be being restored)."""
        return self._connection is not None and self._connection.is_open

    async def open(self) -> None:
        """Connect.

        Raises:
            BrokerUnreachable, AuthenticationFailed: as the first attempt failed.
        """
        self._connection = await self._connect()

    async def _connect(self) -> _pika.AsyncioConnection:
        return await self._ring.aconnect(self._connect_to)

    async def _connect_to(self, node: BrokerURL) -> _pika.AsyncioConnection:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[_pika.AsyncioConnection] = loop.create_future()

        def on_open(connection: _pika.AsyncioConnection) -> None:
            if not opened.done():
                opened.set_result(connection)

        def on_open_error(_connection: object, exc: BaseException) -> None:
            if not opened.done():
                opened.set_exception(errors.connect_error(exc, node))

        connection = _pika.AsyncioConnection(
            _pika.connection_parameters(node, self._name),
            on_open_callback=on_open,
            on_open_error_callback=on_open_error,
            on_close_callback=self._on_connection_closed,
            custom_ioloop=loop,
        )
        try:
            return await asyncio.wait_for(asyncio.shield(opened), node.connect_timeout + 2.0)
        except (asyncio.TimeoutError, TimeoutError):
            with contextlib.suppress(Exception):
                connection.close()
            raise errors.connect_error(TimeoutError("timed out"), node) from None
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                connection.close()
            raise

    def _on_connection_closed(self, connection: object, reason: BaseException) -> None:
        if connection is not self._connection:
            return  # a failed attempt, closed on purpose
        if self._closing:
            if self._closed is not None and not self._closed.done():
                self._closed.set_result(None)
            return
        self._connection = None
        self._outages.lost(self._describe(reason))
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.ensure_future(self._reconnect())

    def _describe(self, reason: BaseException) -> str:
        if isinstance(reason, pika.exceptions.AMQPHeartbeatTimeout):
            return missed_heartbeats(float(self.url.heartbeat or 0))
        text = str(reason)
        return f"{type(reason).__name__}: {text}" if text else type(reason).__name__

    async def _reconnect(self) -> None:
        failures = 0
        while not self._closing:
            await asyncio.sleep(self.backoff.delay(failures))
            if self._closing:
                return
            try:
                self._connection = await self._connect()
                for consumer in self._consumers.values():
                    consumer.calls, consumer.tag = None, None
                    await self._prepare_and_start(consumer)
            except (AmqptasksError, pika.exceptions.AMQPError, OSError) as exc:
                failures += 1
                log.debug("reconnect attempt failed", attempts=failures, error=str(exc))
                self._drop_connection()
                continue
            self._outages.restored(failures + 1)
            return

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(Exception):
                connection.close()

    # -- consumers -----------------------------------------------------------------------------

    async def consume(
        self, queue: str, prefetch: int, callback: DeliveryCallback | None = None
    ) -> None:
        """Consume ``queue`` with at most ``prefetch`` unacked deliveries.

        Its deliveries go to ``callback``, or to the link's ``on_delivery``: a
        queue with other messages (a control queue beside task queues) brings
        its own. The callback stays with the queue when it is consumed again
        after an outage.

        Raises:
            NotFound: the queue does not exist; ChannelError: refused otherwise.
            ConnectionLost: the connection went away meanwhile.
        """
        consumer = _Consumer(queue, prefetch, callback or self._on_delivery)
        self._consumers[queue] = consumer
        try:
            await self._start(consumer)
        except BaseException:
            del self._consumers[queue]
            raise

    async def _prepare_and_start(self, consumer: _Consumer) -> None:
        if self._prepare is not None:
            await self._prepare(consumer.queue)
        await self._start(consumer)

    async def _start(self, consumer: _Consumer) -> None:
        """Consume on the consumer's channel, opened first (with its QoS) if need be."""
        connection = self._connection
        if connection is None or not connection.is_open:
            raise ConnectionLost(f"connection to {self.url.redacted()} lost")
        calls = consumer.calls
        if calls is None or not calls.is_open:
            opened: asyncio.Future[pika.channel.Channel] = (
                asyncio.get_running_loop().create_future()
            )

            def on_open(channel: pika.channel.Channel) -> None:
                if not opened.done():
                    opened.set_result(channel)

            connection.channel(on_open_callback=on_open)
            channel = await asyncio.wait_for(opened, self.url.connect_timeout)
            calls = _Calls(
                channel, consumer.queue, functools.partial(self._channel_closed, consumer)
            )
            await calls.call(
                lambda done: channel.basic_qos(prefetch_count=consumer.prefetch, callback=done)
            )
            channel.add_on_cancel_callback(lambda _frame: self._cancelled_by_broker(consumer))
            consumer.calls = calls
        channel = calls.channel
        wrapper = ConsumerChannel(channel, connection)
        queue = consumer.queue
        on_delivery = consumer.callback

        def on_message(
            _channel: object,
            method: pika.spec.Basic.Deliver,
            properties: pika.spec.BasicProperties,
            body: bytes,
        ) -> None:
            on_delivery(Delivery(wrapper, queue, method, properties, body))

        frame = await calls.call(
            lambda done: channel.basic_consume(queue, on_message, callback=done)
        )
        consumer.tag = frame.method.consumer_tag

    def _channel_closed(self, consumer: _Consumer, failure: BrokerError) -> None:
        consumer.calls = None
        if consumer.tag is None or self._closing or not self.connected:
            return  # not consuming yet (the caller sees why), closing, or reconnecting
        consumer.tag = None
        log.warning(
            "the broker closed a consumer's channel; consuming again",
            queue=consumer.queue,
            error=str(failure),
        )
        self._restore_later(consumer)

    def _cancelled_by_broker(self, consumer: _Consumer) -> None:
        if self._closing or consumer.tag is None:
            return
        consumer.tag = None
        log.warning(
            "the broker cancelled a consumer (was its queue deleted?); consuming again",
            queue=consumer.queue,
        )
        self._restore_later(consumer)

    def _restore_later(self, consumer: _Consumer) -> None:
        if consumer.restoring is None or consumer.restoring.done():
            consumer.restoring = asyncio.ensure_future(self._restore(consumer))

    async def _restore(self, consumer: _Consumer) -> None:
        failures = 0
        while not self._closing and self.connected and consumer.tag is None:
            await asyncio.sleep(self.backoff.delay(failures))
            if self._closing or not self.connected or consumer.tag is not None:
                return
            try:
                await self._prepare_and_start(consumer)
            except (AmqptasksError, pika.exceptions.AMQPError, OSError) as exc:
                failures += 1
                report = log.warning if failures == 1 else log.debug
                report("could not consume again; retrying", queue=consumer.queue, error=str(exc))
                continue
            log.info("consuming again", queue=consumer.queue)

    async def cancel(self, queue: str | None = None) -> None:
        """Stop every consumer, or only ``queue``'s (deliveries already received can still
        be settled; a queue cancelled alone is not consumed again after an outage)."""
        if queue is None:
            consumers = list(self._consumers.values())
        else:
            one = self._consumers.pop(queue, None)
            consumers = [one] if one is not None else []
        for consumer in consumers:
            if consumer.restoring is not None:
                consumer.restoring.cancel()
            calls, tag = consumer.calls, consumer.tag
            consumer.tag = None
            if calls is None or tag is None or not calls.is_open or not self.connected:
                continue

            def cancel(
                done: Callable[[Any], None], channel: Any = calls.channel, tag: str = tag
            ) -> None:
                channel.basic_cancel(tag, done)

            try:
                await asyncio.wait_for(calls.call(cancel), CANCEL_TIMEOUT)
            except Exception as exc:
                log.debug("cancel failed", queue=consumer.queue, error=str(exc))

    async def close(self) -> None:
        """Stop reconnecting and close the connection."""
        self._closing = True
        for task in [self._reconnecting, *(c.restoring for c in self._consumers.values())]:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        connection = self._connection
        if connection is None or connection.is_closed:
            return
        self._closed = asyncio.get_running_loop().create_future()
        if not connection.is_closing:
            with contextlib.suppress(Exception):
                connection.close()
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(self._closed, CANCEL_TIMEOUT)
