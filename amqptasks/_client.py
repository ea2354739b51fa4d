"""Producer clients: publish prepared calls and collect their replies.

:class:`SyncClient` (pika, any thread) and :class:`AioClient` (aio-pika, one
event loop) are twins around the same pure steps: the queue declarations come
from :mod:`amqptasks.topology.model`, replies are decoded by
:func:`decode_reply` and land in the app's :class:`ResultBuffer`.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from amqptasks.exceptions import (
    BadSignature,
    BrokerError,
    DecodeError,
    TopologyMismatch,
    Unroutable,
)
from amqptasks.logging import get_logger
from amqptasks.protocol import serializers
from amqptasks.publishing import PreparedCall, delayed_message
from amqptasks.results import states
from amqptasks.results.meta import ResultMeta, decode_result, encode_result
from amqptasks.security.wanted import sealer_for, verifier_for
from amqptasks.topology import delays, model, names
from amqptasks.topology.model import Declarations
from amqptasks.transport import aio
from amqptasks.transport.confirms import PendingConfirm, wait_confirm
from amqptasks.transport.declare_sync import apply_declarations
from amqptasks.transport.sync import REPLY_RETRY_INTERVAL, SyncTransport

if TYPE_CHECKING:
    import aio_pika.abc
    import pika.spec

    from amqptasks.config import Settings
    from amqptasks.protocol.envelope import OutgoingMessage
    from amqptasks.results.buffer import ResultBuffer
    from amqptasks.routing import Route, Router
    from amqptasks.security.sealing import Sealer
    from amqptasks.security.signing import Verifier
    from amqptasks.topology.management import Management

log = get_logger(__name__)


def decode_reply(body: bytes, content_type: str | None, settings: Settings) -> ResultMeta:
    """Decode one reply message body.

    Raises:
        DecodeError: the content type is not accepted or the body is not a result.
    """
    info = serializers.decoder_for(content_type, settings.accept_content)
    try:
        payload = info.serializer.loads(body)
    except Exception as exc:
        raise DecodeError(f"cannot decode {info.name} result: {exc}", raw=body) from exc
    return decode_result(payload)


@dataclass(frozen=True, slots=True)
class Reply:
    """A message that came to one of a client's reply queues."""

    body: bytes
    content_type: str | None
    correlation_id: str | None


#: Called with each message of an extra reply queue (sync: on the I/O thread;
#: async: on the event loop). It must not block.
ReplyHandler: TypeAlias = Callable[[Reply], None]


def _client_name(app_name: str, kind: str, client_id: str) -> str:
    return f"amqptasks {kind} producer {app_name} {client_id}"


@dataclass(frozen=True)
class Destination:
    """What a producer must have declared before publishing along a route."""

    key: str
    declarations: Declarations
    mode: str


def destination(router: Router, settings: Settings, route: Route) -> Destination:
    """The declarations and mode for ``route`` (pure)."""
    mode = router.declare_mode(route.queue, settings.topology_mode)
    key = f"q:{route.queue.name}" if route.queue is not None else f"x:{route.exchange}"
    if route.queue is None and route.exchange == "":
        return Destination(key, Declarations(), "off")
    return Destination(key, router.declarations(route), mode)


def destination_keys(settings: Settings, call: PreparedCall) -> list[str]:
    """The keys of :func:`destinations`, without building any declaration (cheap)."""
    route = call.route
    keys = [f"q:{route.queue.name}" if route.queue is not None else f"x:{route.exchange}"]
    if call.delay:
        keys.append(f"delays:{settings.delay_prefix}")
        keys.append(f"hop:{call.message.exchange}\x00{call.message.routing_key}")
    return keys


def destinations(router: Router, settings: Settings, call: PreparedCall) -> list[Destination]:
    """Everything ``call`` needs: its route and, when delayed, the delay levels and hop."""
    found = [destination(router, settings, call.route)]
    if call.delay:
        mode = settings.topology_mode
        prefix = settings.delay_prefix
        found.append(
            Destination(
                f"delays:{prefix}", delays.infrastructure(prefix, settings.delay_queue_type), mode
            )
        )
        exchange, key = call.message.exchange, call.message.routing_key
        found.append(
            Destination(f"hop:{exchange}\x00{key}", delays.hop(prefix, exchange, key), mode)
        )
    return found


def wire_message(
    call: PreparedCall, settings: Settings, sealer: Sealer | None = None
) -> OutgoingMessage:
    """The message as published: sealed (signed, encrypted: :mod:`amqptasks.security`)
    and re-addressed to the delay levels when delayed.

    The wait is worked out again at publish time, after the delay levels were
    declared (which takes a moment the first time), so that time is not added
    on top of the delay.
    """
    message = call.message if sealer is None else sealer.seal(call.message)
    wait = call.remaining_delay()
    if wait == 0:
        return message
    return delayed_message(message, wait, settings.delay_prefix)


def verify_reply(
    verifier: Verifier,
    body: bytes,
    headers: dict[str, object] | None,
    content_type: str | None,
    content_encoding: str | None,
    correlation_id: str | None,
) -> ResultMeta | None:
    """None when a reply's signature verifies; else a FAILURE saying so, for its task id.

    With ``security_verify_results`` a reply that is unsigned or forged never
    reaches ``.get()`` as a result: ``.get()`` raises :class:`BadSignature`.
    """
    try:
        verifier.verify(
            body,
            headers,
            content_type=content_type,
            content_encoding=content_encoding,
            correlation_id=correlation_id,
            reply_to=None,
        )
    except BadSignature as exc:
        log.warning("refused a result reply", task_id=correlation_id, error=str(exc))
        refused = BadSignature(f"result of task {correlation_id} refused: {exc}")
        return decode_result(encode_result(correlation_id or "", states.FAILURE, exception=refused))
    return None


def redeclare_when_returned(call: PreparedCall) -> bool:
    """Whether a returned (unroutable) ``call`` is worth declaring again and sending once more.

    A call routed to a queue we declared (or through the delay levels, which
    we declared) came back because someone deleted that queue since: declaring
    it again helps. A call to an exchange with no queue of ours behind it came
    back because nothing is bound there: the caller must hear of it.
    """
    return call.route.queue is not None or bool(call.delay)


def producer_mismatch(exc: TopologyMismatch, where: str) -> None:
    """Producers publish into what exists; the worker owns the strict check."""
    log.warning(
        "topology differs from the app's; publishing anyway", destination=where, error=str(exc)
    )


class _Client:
    """What both producer clients hold: settings, routing, their reply queue."""

    kind = ""

    def __init__(
        self,
        app_name: str,
        settings: Settings,
        buffer: ResultBuffer,
        router: Router,
        management: Management,
    ) -> None:
        self._settings = settings
        self._buffer = buffer
        self._router = router
        self._management = management
        client_id = uuid.uuid4().hex[:12]
        self._connection_name = _client_name(app_name, self.kind, client_id)
        self._app_name = app_name
        self._client_id = client_id
        self.reply_queue = names.reply_queue(app_name, client_id)
        self._declared: set[str] = set()
        #: Signs (encrypts) what this client publishes; None without security settings.
        self.sealer = sealer_for(settings)
        self._reply_verifier = verifier_for(settings) if settings.security_verify_results else None

    def _missing(self, call: PreparedCall) -> list[Destination]:
        """The destinations of ``call`` this client has not declared yet."""
        if self._declared.issuperset(destination_keys(self._settings, call)):
            return []
        return [
            target
            for target in destinations(self._router, self._settings, call)
            if target.key not in self._declared
        ]

    def _extra_reply_queue(self, purpose: str) -> str:
        if not purpose:
            raise ValueError("an extra reply queue needs a purpose (its name's last word)")
        return names.reply_queue(self._app_name, self._client_id, purpose)

    def forget(self, call: PreparedCall) -> None:
        """Declare ``call``'s destinations again before its next publish."""
        self._declared.difference_update(destination_keys(self._settings, call))

    def _deposit_reply(
        self,
        body: bytes,
        content_type: str | None,
        headers: dict[str, object] | None = None,
        content_encoding: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        if self._reply_verifier is not None:
            refused = verify_reply(
                self._reply_verifier, body, headers, content_type, content_encoding, correlation_id
            )
            if refused is not None:
                self._buffer.deposit(refused)
                return
        try:
            self._buffer.deposit(decode_reply(body, content_type, self._settings))
        except DecodeError as exc:
            log.warning("ignored an undecodable reply", queue=self.reply_queue, error=str(exc))


class SyncClient(_Client):
    """Publishes from any thread through one pika connection."""

    kind = "sync"

    def __init__(
        self,
        app_name: str,
        settings: Settings,
        buffer: ResultBuffer,
        router: Router,
        management: Management,
    ) -> None:
        super().__init__(app_name, settings, buffer, router, management)
        self.transport = SyncTransport(
            settings.broker,
            connection_name=self._connection_name,
            publish_timeout=settings.publish_timeout,
        )
        self._replies = False
        self._lock = threading.Lock()

    def _on_reply(self, properties: pika.spec.BasicProperties, body: bytes) -> None:
        self._deposit_reply(
            body,
            properties.content_type,
            properties.headers,
            properties.content_encoding,
            properties.correlation_id,
        )

    def _ensure_replies(self) -> None:
        if self._replies:
            return
        with self._lock:
            if not self._replies:
                self.transport.consume_replies(
                    model.reply_queue(self.reply_queue, self._settings.result_expires),
                    self._on_reply,
                )
                self._replies = True

    def open_reply_queue(self, purpose: str, on_reply: ReplyHandler) -> str:
        """Open another reply queue of this client, beside the results' one.

        Its messages go to ``on_reply`` on the I/O thread (control replies, say,
        with ``purpose="control"``); it is consumed again after a reconnect.

        Returns:
            The queue's name, for the ``reply_to`` of the messages that want answers.
        """
        name = self._extra_reply_queue(purpose)

        def deliver(properties: pika.spec.BasicProperties, body: bytes) -> None:
            on_reply(Reply(body, properties.content_type, properties.correlation_id))

        self.transport.consume_replies(
            model.reply_queue(name, self._settings.result_expires), deliver
        )
        return name

    def ensure(self, call: PreparedCall) -> None:
        """Declare (or verify) what ``call`` needs, once per client and destination."""
        for target in self._missing(call):
            with self._lock:
                if target.key in self._declared:
                    continue
                try:
                    apply_declarations(
                        self._settings.broker,
                        target.declarations,
                        target.mode,
                        management=self._management,
                        connection_name=self._connection_name + " topology",
                    )
                except TopologyMismatch as exc:
                    producer_mismatch(exc, target.key)
                self._declared.add(target.key)

    def publish_nowait(self, call: PreparedCall, *, flush: bool = True) -> PendingConfirm:
        """Declare what the call needs, then hand it to the I/O thread.

        ``flush=False``: see :meth:`SyncTransport.publish_nowait`; :meth:`wait_all`
        sends what is left.
        """
        if call.wants_result:
            self._ensure_replies()
        self.ensure(call)
        return self.transport.publish_nowait(
            wire_message(call, self._settings, self.sealer), flush=flush
        )

    def publish(self, call: PreparedCall) -> None:
        """Publish and wait for the confirm; redeclare once if the queue vanished."""
        failures = self.wait_all([(self.publish_nowait(call), call)])
        if failures:
            raise failures[0]

    def wait_all(self, pending: list[tuple[PendingConfirm, PreparedCall]]) -> list[BrokerError]:
        """Wait for every confirm; return the errors in publishing order.

        Messages returned because their queue vanished since we declared it
        (an operator deleted it, say) are declared again and sent once more.
        """
        self.transport.flush()
        timeout = self._settings.publish_timeout
        failures: list[BrokerError] = []
        again: list[tuple[PendingConfirm, PreparedCall]] = []
        for confirm, call in pending:
            try:
                wait_confirm(confirm, call.message, timeout)
            except Unroutable as exc:
                if redeclare_when_returned(call):
                    again.append((confirm, call))
                else:
                    failures.append(exc)
            except BrokerError as exc:
                failures.append(exc)
        for _confirm, call in again:
            self.forget(call)
        for _confirm, call in again:
            try:
                wait_confirm(self.publish_nowait(call), call.message, timeout)
            except BrokerError as exc:
                failures.append(exc)
        return failures

    def close(self) -> None:
        """Close the connection."""
        self.transport.close()


class AioClient(_Client):
    """Publishes from coroutines of one event loop through aio-pika."""

    kind = "async"

    def __init__(
        self,
        app_name: str,
        settings: Settings,
        buffer: ResultBuffer,
        router: Router,
        management: Management,
    ) -> None:
        super().__init__(app_name, settings, buffer, router, management)
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._publisher: aio.AioPublisher | None = None
        self._reply_channel: aio_pika.abc.AbstractRobustChannel | None = None
        self._replies = False  # the results' reply queue is consumed
        #: Every reply queue consumed, and its handler: consumed again after a reconnect.
        self._reply_handlers: dict[str, aio.ReplyHandler] = {}
        self._resubscribing: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> aio.AioPublisher:
        if self._publisher is not None:
            return self._publisher
        async with self._lock:
            if self._publisher is None:
                url = self._settings.broker
                self._connection = await aio.connect(url, self._connection_name)
                self._connection.reconnect_callbacks.add(self._on_reconnect)
                self._publisher = aio.AioPublisher(
                    self._connection, url, publish_timeout=self._settings.publish_timeout
                )
            return self._publisher

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self._deposit_reply(
            message.body,
            message.content_type,
            dict(message.headers or {}),
            message.content_encoding,
            message.correlation_id,
        )

    async def _ensure_replies(self) -> None:
        if self._replies:
            return
        async with self._lock:
            if not self._replies:
                await self._consume_reply_queue(self.reply_queue, self._on_reply)
                self._replies = True

    async def _consume_reply_queue(self, name: str, handler: aio.ReplyHandler) -> None:
        """Declare reply queue ``name`` and consume it on the reply channel (lock held)."""
        self._reply_handlers[name] = handler
        await self._subscribe(name, handler)

    async def _subscribe(self, name: str, handler: aio.ReplyHandler) -> None:
        """Declare and consume reply queue ``name``: not replayed by the robust connection,
        whose restore would fail (and so never reconnect) while the queue's node is down
        on a cluster; :meth:`_resubscribe` consumes it again instead."""
        assert self._connection is not None
        channel = self._reply_channel
        if channel is None or channel.is_closed:
            channel = await self._connection.channel(publisher_confirms=False)
            self._reply_channel = channel
        declaration = model.reply_queue(name, self._settings.result_expires)
        queue = await channel.declare_queue(
            declaration.name,
            durable=declaration.durable,
            arguments=dict(declaration.arguments),
            robust=False,
        )
        await queue.consume(handler, no_ack=True, robust=False)

    def _on_reconnect(self, *_args: object) -> None:
        if self._reply_handlers and (self._resubscribing is None or self._resubscribing.done()):
            self._resubscribing = asyncio.ensure_future(self._resubscribe())

    async def _resubscribe(self) -> None:
        """Consume every reply queue again after a reconnect; one that cannot be consumed
        now (its node is down) is tried again every few seconds, publishing goes on."""
        pending = dict(self._reply_handlers)
        warned = False
        while pending and self._connection is not None and not self._connection.is_closed:
            for name, handler in list(pending.items()):
                try:
                    async with self._lock:
                        await self._subscribe(name, handler)
                except Exception as exc:  # a 404 (node down), a lost connection: retry
                    if not warned:
                        warned = True
                        log.warning(
                            "cannot consume a reply queue after reconnecting; publishing goes "
                            "on, and its replies wait until it can be consumed again",
                            queue=name,
                            error=str(exc),
                        )
                else:
                    del pending[name]
            if pending:
                await asyncio.sleep(REPLY_RETRY_INTERVAL)

    async def open_reply_queue(self, purpose: str, on_reply: ReplyHandler) -> str:
        """Open another reply queue of this client, beside the results' one.

        Its messages go to ``on_reply`` on the event loop (control replies, say,
        with ``purpose="control"``); the robust channel consumes it again after
        a reconnect.

        Returns:
            The queue's name, for the ``reply_to`` of the messages that want answers.
        """
        name = self._extra_reply_queue(purpose)
        await self._connect()

        async def deliver(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            on_reply(Reply(message.body, message.content_type, message.correlation_id))

        async with self._lock:
            await self._consume_reply_queue(name, deliver)
        return name

    async def ensure(self, call: PreparedCall) -> None:
        """Declare (or verify) what ``call`` needs, once per client and destination."""
        assert self._connection is not None
        for target in self._missing(call):
            try:
                await aio.apply_declarations(
                    self._connection,
                    target.declarations,
                    target.mode,
                    management=self._management,
                )
            except TopologyMismatch as exc:
                producer_mismatch(exc, target.key)
            self._declared.add(target.key)

    async def publish(self, call: PreparedCall) -> None:
        """Publish and wait for the confirm; redeclare once if the queue vanished."""
        publisher = await self._connect()
        if call.wants_result:
            await self._ensure_replies()
        await self.ensure(call)
        message = wire_message(call, self._settings, self.sealer)
        try:
            await publisher.publish(message)
        except Unroutable:
            if not redeclare_when_returned(call):
                raise
            self.forget(call)
            await self.ensure(call)
            await publisher.publish(message)

    async def close(self) -> None:
        """Close the connection."""
        connection, self._connection = self._connection, None
        if self._resubscribing is not None:
            self._resubscribing.cancel()
        self._publisher = None
        self._reply_channel = None
        self._replies = False
        self._reply_handlers.clear()
        if connection is not None and not connection.is_closed:
            await connection.close()
