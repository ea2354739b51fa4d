"""Async transport on aio-pika, shared by async producers and the worker.

aio-pika's robust connection reconnects by itself and replays the channels,
queues and consumers declared through it, so after a broker restart a worker
resumes consuming without our help. With a cluster URL the first connection goes
to the first node that answers and each reconnect attempt to the next node.
Publishes go through a channel in confirm mode with ``on_return_raises``: a
returned (unroutable) message raises instead of being silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import aiormq.exceptions
import pamqp.commands

from amqptasks.config.tls_options import TLSOptions
from amqptasks.exceptions import ConnectionLost
from amqptasks.logging import get_logger
from amqptasks.topology.declare import Step, declaration_steps
from amqptasks.topology.model import (
    BindingDeclaration,
    Exchange,
    ExchangeBindingDeclaration,
    QueueDeclaration,
)
from amqptasks.transport import _fieldtable, errors, tls
from amqptasks.transport.failover import NodeRing
from amqptasks.transport.robust import QuietRobustConnection, RobustConnection

if TYPE_CHECKING:
    from amqptasks.config import BrokerURL
    from amqptasks.exceptions import BrokerError
    from amqptasks.protocol.envelope import OutgoingMessage
    from amqptasks.topology.management import Management
    from amqptasks.topology.model import Declarations

log = get_logger(__name__)

ReplyHandler = Callable[[aio_pika.abc.AbstractIncomingMessage], Awaitable[None]]


async def connect(
    url: BrokerURL, connection_name: str, *, log_outages: bool = True
) -> aio_pika.abc.AbstractRobustConnection:
    """Open a robust connection, failing fast (and readably) when it cannot.

    Without ``log_outages`` its outages are logged at debug level only (a worker's
    publishing connection: its consumer's connection reports them). A cluster URL's
    nodes are tried in turn; the connection then fails over among them.

    Raises:
        BrokerUnreachable: refused, unresolvable or timed out (every node).
        AuthenticationFailed: bad credentials or vhost.
    """
    ring = NodeRing(url)
    connection: RobustConnection = await ring.aconnect(
        lambda node: _connect_node(node, connection_name, log_outages=log_outages)
    )
    if len(ring.nodes) > 1:
        connection.fail_over(ring.nodes, ring.current)
    return connection


async def _connect_node(url: BrokerURL, connection_name: str, *, log_outages: bool) -> Any:
    kwargs: dict[str, Any] = {}
    if url.external_login:
        kwargs["auth"] = "external"
    try:
        if url.ssl:
            kwargs["ssl"] = True
            kwargs["ssl_context"] = tls.ssl_context(url.tls or TLSOptions())
        return await asyncio.wait_for(
            aio_pika.connect_robust(
                host=url.host,
                port=url.port,
                login=url.username,
                password=url.password,
                virtualhost=url.vhost,
                timeout=url.connect_timeout,
                heartbeat=url.heartbeat,
                client_properties={
                    "connection_name": url.connection_name(connection_name),
                    "product": "amqptasks",
                },
                connection_class=RobustConnection if log_outages else QuietRobustConnection,
                **kwargs,
            ),
            timeout=url.connect_timeout + 2.0,
        )
    except (asyncio.TimeoutError, TimeoutError) as exc:
        raise errors.connect_error(TimeoutError("timed out"), url) from exc
    except (OSError, aiormq.exceptions.AMQPError, ConnectionError) as exc:
        raise errors.connect_error(exc, url) from exc


def cancelled_by_connection() -> bool:
    """Whether a ``CancelledError`` just caught came from a dying connection.

    When aiormq gives up on a silent peer it cancels its reader, and every
    future waiting on that connection (a publisher confirm, an RPC reply) ends
    *cancelled*: the awaiting task sees ``CancelledError`` although nobody
    cancelled it. Such an error must become :class:`ConnectionLost`, while a real
    cancellation of the task must go on. ``Task.cancelling()`` (Python 3.11+)
    tells them apart; without it, every ``CancelledError`` is taken as real.
    """
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is not None and cancelling() == 0


class _Properties(pamqp.commands.Basic.Properties):
    """Properties whose headers are encoded by :mod:`amqptasks.transport._fieldtable`.

    pamqp (under aio-pika) refuses ``bytes`` (pika sends byte arrays as
    ``bytes``: every re-publish of such a header failed), writes floats as
    32-bit ``f`` (a double loses precision, a large one cannot be packed) and
    truncates keys over 128 bytes. The shared encoder writes what the sync
    transport writes, and takes whatever the consumer decoded.
    """

    def encode_property(self, name: str, value: Any) -> bytes:
        if name == "headers":
            return _fieldtable.table_bytes(value)
        return super().encode_property(name, value)


class _Message(aio_pika.Message):
    @property
    def properties(self) -> pamqp.commands.Basic.Properties:
        base = super().properties
        return _Properties(**{name: getattr(base, name) for name in base.__slots__})


def to_aio_message(message: OutgoingMessage) -> aio_pika.Message:
    """The aio-pika message for an :class:`OutgoingMessage`."""
    return _Message(
        body=message.body,
        headers=message.headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode(message.delivery_mode),
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message.message_id,
        expiration=int(message.expiration) / 1000 if message.expiration else None,
    )


class AioPublisher:
    """Publishes with confirms and ``mandatory`` on one channel of a robust connection.

    :meth:`publish_unconfirmed` uses a second channel, without confirms, for
    messages nobody may be listening to.
    """

    def __init__(
        self,
        connection: aio_pika.abc.AbstractRobustConnection,
        url: BrokerURL,
        *,
        publish_timeout: float,
    ) -> None:
        self._connection = connection
        self._url = url
        self._publish_timeout = publish_timeout
        self._confirmed = _PublishChannel(connection, confirms=True)
        self._unconfirmed = _PublishChannel(connection, confirms=False)

    async def publish(self, message: OutgoingMessage) -> None:
        """Publish and wait for the confirm.

        While the robust connection is reconnecting, raises :class:`ConnectionLost`
        at once if an attempt already failed, else waits for the attempt under
        way to succeed or fail (at most the URL's ``connect_timeout``, as long as
        a sync producer's connection attempt may take): the caller's retry
        policy, not this wait, decides how long to keep trying.

        Raises:
            Unroutable, PublishNotConfirmed, ConnectionLost, ChannelError.
        """
        await self._send(self._confirmed, message, mandatory=True)

    async def publish_unconfirmed(self, message: OutgoingMessage) -> None:
        """Publish without ``mandatory`` and without waiting for a confirm.

        For messages nobody may be listening to (events to an exchange no queue
        is bound to): the broker drops an unroutable one instead of returning
        it, so no :class:`Unroutable` is raised. Returns once the message is
        written; a connection lost meanwhile loses it silently.

        Raises:
            ConnectionLost, ChannelError: as :meth:`publish`.
        """
        await self._send(self._unconfirmed, message, mandatory=False)

    async def _send(
        self, through: _PublishChannel, message: OutgoingMessage, *, mandatory: bool
    ) -> None:
        await self._wait_connected()
        try:
            exchange = await through.exchange(message.exchange)
            await exchange.publish(
                to_aio_message(message),
                message.routing_key,
                mandatory=mandatory,
                timeout=self._publish_timeout,
            )
        except aio_pika.exceptions.DeliveryError as exc:
            frame = exc.frame
            if frame is not None and type(frame).__name__ == "Return":
                raise errors.unroutable(message, getattr(frame, "reply_text", "NO_ROUTE")) from exc
            # A channel whose publishes the broker nacks may go on nacking (a quorum
            # queue's leader replaced under it, see transport._session): use a new one.
            await through.replace()
            raise errors.nacked(message) from exc
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise errors.not_confirmed(message, self._publish_timeout) from exc
        except aiormq.exceptions.ChannelClosed as exc:
            through.forget()
            raise translate_channel_error(
                exc, f"publishing to {message.exchange or '(default)'!r}"
            ) from exc
        except (aiormq.exceptions.ConnectionClosed, ConnectionError, RuntimeError) as exc:
            # The robust channel is restored with the connection: keep it.
            raise errors.connection_lost(exc, self._url, "publishing") from exc
        except asyncio.CancelledError as exc:
            if not cancelled_by_connection():
                raise
            raise errors.connection_lost(
                None, self._url, "publishing: the broker went silent (missed heartbeats)"
            ) from exc

    async def _wait_connected(self) -> None:
        await wait_connected(self._connection, self._url, "publishing")

    async def close(self) -> None:
        """Close the publishing channels."""
        await self._confirmed.close()
        await self._unconfirmed.close()


class _PublishChannel:
    """A publishing channel of a robust connection, opened on first use, and its exchanges."""

    def __init__(self, connection: aio_pika.abc.AbstractRobustConnection, *, confirms: bool):
        self._connection = connection
        self._confirms = confirms
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        self._lock = asyncio.Lock()

    async def exchange(self, name: str) -> aio_pika.abc.AbstractExchange:
        """The exchange ``name`` on this channel (opened again if it was closed)."""
        channel = self._channel
        if channel is None or channel.is_closed:
            async with self._lock:
                channel = self._channel
                if channel is None or channel.is_closed:
                    channel = await self._connection.channel(
                        publisher_confirms=self._confirms, on_return_raises=self._confirms
                    )
                    self._channel = channel
                    self._exchanges.clear()
        exchange = self._exchanges.get(name)
        if exchange is None:
            exchange = (
                channel.default_exchange
                if name == ""
                else await channel.get_exchange(name, ensure=False)
            )
            self._exchanges[name] = exchange
        return exchange

    def forget(self) -> None:
        """The broker closed the channel: open a new one next time."""
        self._channel = None

    async def replace(self) -> None:
        """Open a new channel next time and close this one (its unconfirmed publishes fail)."""
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                await channel.close()

    async def close(self) -> None:
        """Close the channel."""
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(Exception):
                await self._channel.close()
        self._channel = None


async def wait_connected(
    connection: aio_pika.abc.AbstractRobustConnection, url: BrokerURL, doing: str
) -> None:
    """Return once ``connection`` is up; :class:`ConnectionLost` (saying what was being
    done) if it is reconnecting and an attempt failed, or none succeeded in time."""
    if connection.connected.is_set():
        return
    timeout = url.connect_timeout
    if isinstance(connection, RobustConnection):
        if await connection.wait_attempt(timeout):
            return
        # As a sync producer's failed connect would: fail now, and let the retry
        # policy pace the next tries while the connection keeps reconnecting.
        raise errors.connection_lost(
            None,
            url,
            f"{doing}: reconnecting ({connection.failed_attempts} attempt(s) failed: "
            f"{connection.last_error or 'no answer'})",
        )
    try:
        await asyncio.wait_for(connection.connected.wait(), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        raise errors.connection_lost(
            None, url, f"{doing}: still reconnecting after {timeout:g}s"
        ) from None


def translate_channel_error(exc: BaseException, context: str) -> BrokerError:
    """Map an aiormq channel error (with its AMQP reply code) to our tree."""
    code = 0
    text = str(exc)
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        code = args[0]
        text = str(args[1]) if len(args) > 1 else text
    elif isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed):
        code = 406
    elif isinstance(exc, aiormq.exceptions.ChannelNotFoundEntity):
        code = 404
    elif isinstance(exc, aiormq.exceptions.ChannelAccessRefused):
        code = 403
    return errors.channel_error(code, text, context)


async def _execute(channel: aio_pika.abc.AbstractChannel, step: Step) -> None:
    target = step.target
    if isinstance(target, Exchange):
        await channel.declare_exchange(
            target.name,
            aio_pika.ExchangeType(target.type),
            passive=step.passive,
            durable=target.durable,
            auto_delete=target.auto_delete,
            arguments=dict(target.arguments),
        )
    elif isinstance(target, QueueDeclaration):
        await channel.declare_queue(
            target.name,
            passive=step.passive,
            durable=target.durable,
            exclusive=target.exclusive,
            auto_delete=target.auto_delete,
            arguments=dict(target.arguments),
        )
    elif isinstance(target, BindingDeclaration):
        queue = await channel.get_queue(target.queue, ensure=False)
        await queue.bind(target.exchange, target.routing_key, arguments=dict(target.arguments))
    elif isinstance(target, ExchangeBindingDeclaration):
        destination = await channel.get_exchange(target.destination, ensure=False)
        await destination.bind(target.source, target.routing_key, arguments=dict(target.arguments))


async def apply_declarations(
    connection: aio_pika.abc.AbstractConnection,
    declarations: Declarations,
    mode: str,
    *,
    management: Management | None,
) -> None:
    """Async twin of :func:`amqptasks.transport.declare_sync.apply_declarations`.

    Runs on throw-away channels: a 406 closes only the channel it happened on.

    Raises:
        TopologyMismatch, NotFound, AccessRefused: as the mode's checks find.
        ConnectionLost: the connection was lost (or is reconnecting).
    """
    try:
        await _apply_declarations(connection, declarations, mode, management=management)
    except (aiormq.exceptions.ConnectionClosed, ConnectionError, RuntimeError) as exc:
        raise ConnectionLost(f"connection lost while declaring topology: {exc}") from exc
    except asyncio.CancelledError as exc:
        if not cancelled_by_connection():
            raise
        raise ConnectionLost("connection lost while declaring topology") from exc


async def _apply_declarations(
    connection: aio_pika.abc.AbstractConnection,
    declarations: Declarations,
    mode: str,
    *,
    management: Management | None,
) -> None:
    flow = declaration_steps(declarations, mode)
    try:
        step = next(flow)
    except StopIteration:
        return
    channel = await connection.channel(publisher_confirms=False)
    try:
        while True:
            answer: Any = None
            if step.kind == "live":
                assert isinstance(step.target, tuple)
                kind, name = step.target
                if management is not None:
                    loop = asyncio.get_running_loop()
                    answer = await loop.run_in_executor(None, management.live, kind, name)
            else:
                try:
                    await _execute(channel, step)
                except aiormq.exceptions.ChannelClosed as exc:
                    answer = translate_channel_error(exc, "")
                    channel = await connection.channel(publisher_confirms=False)
            try:
                step = flow.send(answer)
            except StopIteration:
                return
    finally:
        if not channel.is_closed:
            with contextlib.suppress(Exception):
                await channel.close()


async def consumable_queue(
    channel: aio_pika.abc.AbstractRobustChannel,
    name: str,
    declarations: Declarations,
    mode: str,
) -> aio_pika.abc.AbstractRobustQueue:
    """Queue ``name`` on a robust ``channel``, declared so a reconnect declares it again.

    The robust channel records what is declared through it and sends it all
    again after every reconnect, before its consumers are restored. In
    ``declare`` mode that is the queue's whole topology (its exchanges, its
    dead-letter queue, the queue with its arguments, its bindings), so a queue
    deleted or lost while the worker was disconnected is back before consuming
    resumes. In ``passive`` and ``off`` modes only a passive declaration of the
    queue is repeated: the operator owns the topology.

    Call it after the topology was checked (a 406 here would close the channel).

    Raises:
        ChannelError: the queue is missing (passive), or a declaration was refused.
    """
    try:
        if mode == "declare":
            queues = await _declare_replayed(channel, declarations)
            if name in queues:
                return queues[name]
        return await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelClosed as exc:
        raise translate_channel_error(exc, f"queue {name!r}") from exc


async def _declare_replayed(
    channel: aio_pika.abc.AbstractRobustChannel, declarations: Declarations
) -> dict[str, aio_pika.abc.AbstractRobustQueue]:
    exchanges: dict[str, aio_pika.abc.AbstractRobustExchange] = {}
    for exchange in declarations.exchanges:
        exchanges[exchange.name] = await channel.declare_exchange(
            exchange.name,
            aio_pika.ExchangeType(exchange.type),
            durable=exchange.durable,
            auto_delete=exchange.auto_delete,
            arguments=dict(exchange.arguments),
        )
    queues: dict[str, aio_pika.abc.AbstractRobustQueue] = {}
    for queue in declarations.queues:
        queues[queue.name] = await channel.declare_queue(
            queue.name,
            durable=queue.durable,
            exclusive=queue.exclusive,
            auto_delete=queue.auto_delete,
            arguments=dict(queue.arguments),
        )
    for binding in declarations.bindings:
        bound = queues.get(binding.queue) or await channel.declare_queue(
            binding.queue, passive=True
        )
        await bound.bind(binding.exchange, binding.routing_key, arguments=dict(binding.arguments))
    for link in declarations.exchange_bindings:
        # Not replayed: on restore an exchange's bindings follow it at once, before a
        # source exchange declared later exists. Durable exchanges keep them anyway.
        destination = exchanges.get(link.destination) or await channel.declare_exchange(
            link.destination, passive=True
        )
        await destination.bind(
            link.source, link.routing_key, arguments=dict(link.arguments), robust=False
        )
    return queues
