"""Async transport on aio-pika, shared by async producers and the worker.

aio-pika's robust connection reconnects by itself and replays the channels,
queues and consumers declared through it, so after a broker restart a worker
resumes consuming without our help. Publishes go through a channel in confirm
mode with ``on_return_raises``: a returned (unroutable) message raises instead
of being silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import aiormq.exceptions

from amqptasks.logging import get_logger
from amqptasks.transport import errors

if TYPE_CHECKING:
    from amqptasks.config import BrokerURL
    from amqptasks.exceptions import BrokerError
    from amqptasks.protocol.envelope import OutgoingMessage
    from amqptasks.topology.model import QueueDeclaration

log = get_logger(__name__)

ReplyHandler = Callable[[aio_pika.abc.AbstractIncomingMessage], Awaitable[None]]


async def connect(url: BrokerURL, connection_name: str) -> aio_pika.abc.AbstractRobustConnection:
    """Open a robust connection, failing fast (and readably) when it cannot.

    Raises:
        BrokerUnreachable: refused, unresolvable or timed out.
        AuthenticationFailed: bad credentials or vhost.
    """
    kwargs: dict[str, Any] = {}
    if url.ssl:
        kwargs["ssl"] = True
        kwargs["ssl_context"] = ssl.create_default_context()
    try:
        return await asyncio.wait_for(
            aio_pika.connect_robust(
                host=url.host,
                port=url.port,
                login=url.username,
                password=url.password,
                virtualhost=url.vhost,
                timeout=url.connect_timeout,
                heartbeat=url.heartbeat,
                client_properties={"connection_name": connection_name, "product": "amqptasks"},
                **kwargs,
            ),
            timeout=url.connect_timeout + 2.0,
        )
    except (asyncio.TimeoutError, TimeoutError) as exc:
        raise errors.connect_error(TimeoutError("timed out"), url) from exc
    except (OSError, aiormq.exceptions.AMQPError, ConnectionError) as exc:
        raise errors.connect_error(exc, url) from exc


def to_aio_message(message: OutgoingMessage) -> aio_pika.Message:
    """The aio-pika message for an :class:`OutgoingMessage`."""
    return aio_pika.Message(
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
    """Publishes with confirms and ``mandatory`` on one channel of a robust connection."""

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
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        self._lock = asyncio.Lock()

    async def _exchange(self, name: str) -> aio_pika.abc.AbstractExchange:
        channel = self._channel
        if channel is None or channel.is_closed:
            async with self._lock:
                channel = self._channel
                if channel is None or channel.is_closed:
                    channel = await self._connection.channel(
                        publisher_confirms=True, on_return_raises=True
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

    async def publish(self, message: OutgoingMessage) -> None:
        """Publish and wait for the confirm.

        Raises:
            Unroutable, PublishNotConfirmed, ConnectionLost, ChannelError.
        """
        exchange = await self._exchange(message.exchange)
        try:
            await exchange.publish(
                to_aio_message(message),
                message.routing_key,
                mandatory=True,
                timeout=self._publish_timeout,
            )
        except aio_pika.exceptions.DeliveryError as exc:
            frame = exc.frame
            if frame is not None and type(frame).__name__ == "Return":
                raise errors.unroutable(message, getattr(frame, "reply_text", "NO_ROUTE")) from exc
            raise errors.nacked(message) from exc
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise errors.not_confirmed(message, self._publish_timeout) from exc
        except aiormq.exceptions.ChannelClosed as exc:
            self._channel = None
            raise translate_channel_error(
                exc, f"publishing to {message.exchange or '(default)'!r}"
            ) from exc
        except (aiormq.exceptions.ConnectionClosed, ConnectionError, RuntimeError) as exc:
            self._channel = None
            raise errors.connection_lost(exc, self._url, "publishing") from exc

    async def close(self) -> None:
        """Close the publishing channel."""
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(Exception):
                await self._channel.close()
        self._channel = None


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


async def declare_queue(
    connection: aio_pika.abc.AbstractConnection,
    declaration: QueueDeclaration,
    *,
    passive: bool = False,
) -> None:
    """Declare (or passively check) a queue on a throw-away channel.

    A 406 closes only that channel, so the caller's other channels keep working.

    Raises:
        TopologyMismatch: the queue exists with other arguments.
        NotFound: passive check of a missing queue.
        AccessRefused: the user may not configure it.
    """
    channel = await connection.channel(publisher_confirms=False)
    try:
        await channel.declare_queue(
            declaration.name,
            durable=declaration.durable,
            exclusive=declaration.exclusive,
            auto_delete=declaration.auto_delete,
            arguments=dict(declaration.arguments),
            passive=passive,
        )
    except aiormq.exceptions.ChannelClosed as exc:
        error = translate_channel_error(exc, f"queue {declaration.name!r}")
        if error.__class__.__name__ == "TopologyMismatch":
            error.args = (
                f"{error.args[0]}; we wanted arguments {dict(declaration.arguments)!r}. "
                f"Delete the queue, or make the app declare what exists",
            )
        raise error from exc
    finally:
        if not channel.is_closed:
            with contextlib.suppress(Exception):
                await channel.close()
