"""Sync transport: one pika ``SelectConnection`` on a private I/O thread.

pika connections are not thread-safe, and a ``BlockingConnection`` in confirm
mode waits one round trip per publish. So each :class:`SyncTransport` runs a
``SelectConnection`` on a daemon thread; any number of caller threads hand it
messages through a queue, and the I/O thread publishes them back to back in
confirm mode and resolves each caller's future when the broker's ``basic.ack``
(possibly ``multiple``) arrives. Many threads, or one thread using
:meth:`SyncTransport.publish_nowait`, therefore pipeline their confirms.

Every publish is ``mandatory``: RabbitMQ sends ``basic.return`` before the
``basic.ack`` of a message no queue took, and we turn that pair into
:class:`~amqptasks.exceptions.Unroutable`.
https://www.rabbitmq.com/docs/confirms#when-publishes-are-confirmed

The connection opens lazily and is opened again after it was lost; a fork
(gunicorn, celery-style prefork) gets a fresh connection in the child.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

import pika
import pika.channel
import pika.exceptions
import pika.frame
import pika.spec

from amqptasks.exceptions import (
    AmqptasksError,
    BrokerError,
    BrokerUnreachable,
    ConfigError,
    ConnectionLost,
)
from amqptasks.logging import get_logger
from amqptasks.transport import errors
from amqptasks.transport._pika import SelectConnection, connection_parameters

if TYPE_CHECKING:
    from amqptasks.config import BrokerURL
    from amqptasks.protocol.envelope import OutgoingMessage
    from amqptasks.topology.model import QueueDeclaration

log = get_logger(__name__)

#: Called on the I/O thread with (properties, body) of each reply message.
ReplyCallback = Callable[[pika.spec.BasicProperties, bytes], None]


def _properties(message: OutgoingMessage) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        headers=message.headers,
        delivery_mode=message.delivery_mode,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message.message_id,
        expiration=message.expiration,
    )


_fork_generation = 0


def _after_fork() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork)


class _Session:
    """One connection attempt and its life; replaced by a new one when it dies."""

    def __init__(self, url: BrokerURL, connection_name: str) -> None:
        self.url = url
        self.generation = _fork_generation
        self.closed = False
        self._closing = False
        self._name = connection_name
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._connection: pika.SelectConnection | None = None
        self._channel: pika.channel.Channel | None = None
        self._next_tag = 0
        self._pending: dict[int, tuple[Future[None], OutgoingMessage]] = {}
        self._returned: dict[str, pika.spec.Basic.Return] = {}
        self._outbox: collections.deque[tuple[OutgoingMessage, Future[None]]] = collections.deque()
        self._outbox_lock = threading.Lock()
        self._drain_scheduled = False
        self._thread = threading.Thread(
            target=self._run, name=f"amqptasks-io-{connection_name}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(url.connect_timeout + 2.0):
            self.close()
            raise BrokerUnreachable(
                f"cannot connect to {url.redacted()}: no answer within {url.connect_timeout:g}s"
            )
        if self._open_error is not None:
            raise self._open_error

    # -- I/O thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._connection = SelectConnection(
                connection_parameters(self.url, self._name),
                on_open_callback=self._on_open,
                on_open_error_callback=self._on_open_error,
                on_close_callback=self._on_closed,
            )
            self._connection.ioloop.start()
        except Exception as exc:  # the loop itself failed: report, never hang callers
            self._open_error = self._open_error or errors.connect_error(exc, self.url)
            self._ready.set()
        finally:
            self.closed = True
            self._fail_all(errors.connection_lost(None, self.url, "publishing"))
            if self._connection is not None:
                with contextlib.suppress(Exception):  # releases the loop's wake-up sockets
                    self._connection.ioloop.close()

    def _on_open(self, connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_open_error(self, connection: pika.SelectConnection, error: BaseException) -> None:
        self._open_error = errors.connect_error(error, self.url)
        self._ready.set()
        connection.ioloop.stop()

    def _on_closed(self, connection: pika.SelectConnection, reason: BaseException) -> None:
        self.closed = True
        if not self._ready.is_set():
            self._open_error = errors.connect_error(reason, self.url)
            self._ready.set()
        elif not self._closing:
            log.warning("broker connection closed", broker=self.url.redacted(), reason=str(reason))
        self._fail_all(errors.connection_lost(reason, self.url, "publishing"))
        connection.ioloop.stop()

    def _on_channel_open(self, channel: pika.channel.Channel) -> None:
        channel.add_on_return_callback(self._on_return)
        channel.add_on_close_callback(self._on_channel_closed)
        channel.confirm_delivery(
            ack_nack_callback=self._on_confirm,
            callback=lambda _frame: self._on_confirm_mode(channel),
        )

    def _on_confirm_mode(self, channel: pika.channel.Channel) -> None:
        self._channel = channel
        self._next_tag = 0
        self._ready.set()
        self._drain_outbox()

    def _on_channel_closed(self, channel: pika.channel.Channel, reason: BaseException) -> None:
        if channel is not self._channel:
            return
        self._channel = None
        failure: BrokerError
        if isinstance(reason, pika.exceptions.ChannelClosedByBroker):
            code, text = reason.reply_code, reason.reply_text
            failure = errors.channel_error(code, text, "publish channel closed")
        else:  # closed with its connection (reset, missed heartbeats, broker stopping)
            failure = errors.connection_lost(reason, self.url, "publishing")
        self._fail_all(failure)
        if self._connection is not None and self._connection.is_open:
            # e.g. a publish to an exchange that does not exist (404): open a new
            # channel so later publishes work; the failed ones were reported.
            self._connection.channel(on_open_callback=self._on_channel_open)

    def _on_return(
        self,
        _channel: pika.channel.Channel,
        method: pika.spec.Basic.Return,
        properties: pika.spec.BasicProperties,
        _body: bytes,
    ) -> None:
        if properties.message_id:
            self._returned[properties.message_id] = method

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        tag: int = method.delivery_tag
        nacked = isinstance(method, pika.spec.Basic.Nack)
        if method.multiple:
            done = [t for t in self._pending if t <= tag]
        else:
            done = [tag] if tag in self._pending else []
        for each in done:
            future, message = self._pending.pop(each)
            returned = self._returned.pop(message.message_id, None)
            if returned is not None:
                future.set_exception(errors.unroutable(message, returned.reply_text))
            elif nacked:
                future.set_exception(errors.nacked(message))
            else:
                future.set_result(None)

    def _drain_outbox(self) -> None:
        with self._outbox_lock:
            self._drain_scheduled = False
            batch = list(self._outbox)
            self._outbox.clear()
        channel = self._channel
        for message, future in batch:
            if channel is None or not channel.is_open:
                if self._connection is not None and self._connection.is_open:
                    with self._outbox_lock:  # wait for the replacement channel
                        self._outbox.append((message, future))
                    continue
                future.set_exception(errors.connection_lost(None, self.url, "publishing"))
                continue
            self._next_tag += 1
            self._pending[self._next_tag] = (future, message)
            try:
                channel.basic_publish(
                    message.exchange,
                    message.routing_key,
                    message.body,
                    _properties(message),
                    mandatory=True,
                )
            except pika.exceptions.UnsupportedAMQPFieldException as exc:
                # Raised while encoding, before anything was sent: the broker will not
                # confirm this tag, so take it back or every later confirm is off by one.
                self._pending.pop(self._next_tag, None)
                self._next_tag -= 1
                future.set_exception(
                    ConfigError(
                        f"message {message.message_id}: a header value has a type AMQP cannot "
                        f"carry: {exc}"
                    )
                )
            except Exception as exc:
                self._pending.pop(self._next_tag, None)
                future.set_exception(errors.connection_lost(exc, self.url, "publishing"))

    def _fail_all(self, error: BrokerError) -> None:
        pending = list(self._pending.values())
        self._pending.clear()
        for future, _message in pending:
            if not future.done():
                future.set_exception(error)
        with self._outbox_lock:
            queued = list(self._outbox)
            self._outbox.clear()
        for _message, future in queued:
            if not future.done():
                future.set_exception(error)

    # -- caller threads ---------------------------------------------------------------------

    def submit(self, message: OutgoingMessage) -> Future[None]:
        future: Future[None] = Future()
        connection = self._connection
        if self.closed or connection is None:
            future.set_exception(errors.connection_lost(None, self.url, "publishing"))
            return future
        with self._outbox_lock:
            self._outbox.append((message, future))
            schedule = not self._drain_scheduled
            self._drain_scheduled = True
        if schedule:
            try:
                connection.ioloop.add_callback_threadsafe(self._drain_outbox)
            except Exception as exc:  # the loop is gone
                self.closed = True
                self._fail_all(errors.connection_lost(exc, self.url, "publishing"))
        return future

    def call(
        self,
        operation: Callable[[Callable[[BaseException | None], None]], None],
        timeout: float,
        doing: str,
    ) -> None:
        """Run ``operation(done)`` on the I/O thread and wait for it to call ``done``."""
        future: Future[None] = Future()

        def done(error: BaseException | None) -> None:
            if future.done():
                return
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

        def start() -> None:
            try:
                operation(done)
            except Exception as exc:
                done(errors.connection_lost(exc, self.url, doing))

        connection = self._connection
        if self.closed or connection is None:
            raise errors.connection_lost(None, self.url, doing)
        connection.ioloop.add_callback_threadsafe(start)
        try:
            future.result(timeout)
        except FutureTimeout:
            raise BrokerError(
                f"broker at {self.url.redacted()} did not answer within {timeout:g}s while {doing}"
            ) from None

    def open_channel(
        self,
        on_open: Callable[[pika.channel.Channel], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        """Open a channel on the I/O thread (must be called from it)."""
        assert self._connection is not None

        def closed(_channel: pika.channel.Channel, reason: BaseException) -> None:
            code = getattr(reason, "reply_code", 0)
            if code not in (0, 200):
                on_error(errors.channel_error(code, getattr(reason, "reply_text", str(reason))))

        def opened(channel: pika.channel.Channel) -> None:
            channel.add_on_close_callback(closed)
            on_open(channel)

        self._connection.channel(on_open_callback=opened)

    def close(self) -> None:
        connection = self._connection
        self.closed = True
        self._closing = True
        if connection is not None:
            with contextlib.suppress(Exception):  # the loop already ended
                connection.ioloop.add_callback_threadsafe(
                    lambda: (
                        connection.close()
                        if connection.is_open or connection.is_opening
                        else connection.ioloop.stop()
                    )
                )
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)


class SyncTransport:
    """Thread-safe publisher (and reply consumer) over one pika connection.

    Args:
        url: Where the broker is.
        connection_name: Shown in the management UI for this connection.
        publish_timeout: Seconds :meth:`publish` waits for the broker's confirm.
    """

    def __init__(
        self, url: BrokerURL, *, connection_name: str, publish_timeout: float = 15.0
    ) -> None:
        self.url = url
        self.connection_name = connection_name
        self.publish_timeout = publish_timeout
        self._lock = threading.Lock()
        self._session: _Session | None = None
        self._reply: tuple[QueueDeclaration, ReplyCallback] | None = None

    def _current(self) -> _Session:
        with self._lock:
            session = self._session
            if session is not None and session.generation != _fork_generation:
                session = None  # forked: the parent's socket is not ours
            if session is None or session.closed:
                session = _Session(self.url, self.connection_name)
                self._session = session
                if self._reply is not None:
                    self._consume_replies(session, *self._reply)
            return session

    def publish_nowait(self, message: OutgoingMessage) -> Future[None]:
        """Hand ``message`` to the I/O thread; the future resolves on the broker's confirm.

        The future's exception is :class:`Unroutable`, :class:`PublishNotConfirmed`
        or :class:`ConnectionLost`.
        """
        try:
            session = self._current()
        except AmqptasksError as exc:
            future: Future[None] = Future()
            future.set_exception(exc)
            return future
        return session.submit(message)

    def publish(self, message: OutgoingMessage, *, timeout: float | None = None) -> None:
        """Publish ``message`` and wait until the broker confirmed it (on disk).

        Raises:
            Unroutable: no queue took the message.
            PublishNotConfirmed: nacked, or no confirm within ``timeout``.
            BrokerUnreachable, AuthenticationFailed, ConnectionLost: connection problems.
        """
        wait_confirm(self.publish_nowait(message), message, timeout or self.publish_timeout)

    def consume_replies(self, declaration: QueueDeclaration, callback: ReplyCallback) -> None:
        """Declare the reply queue and deliver its messages to ``callback`` (I/O thread).

        The subscription is made again on every new connection.
        """
        with self._lock:
            self._reply = (declaration, callback)
            session = self._session
        self._consume_replies(session or self._current(), declaration, callback)

    def _consume_replies(
        self, session: _Session, declaration: QueueDeclaration, callback: ReplyCallback
    ) -> None:
        def operation(done: Callable[[BaseException | None], None]) -> None:
            def on_error(error: BaseException) -> None:
                done(_with_queue_context(error, declaration))

            def on_open(channel: pika.channel.Channel) -> None:
                def deliver(
                    _ch: Any, _method: Any, properties: pika.spec.BasicProperties, body: bytes
                ) -> None:
                    callback(properties, body)

                def declared(_frame: pika.frame.Method) -> None:
                    channel.basic_consume(
                        declaration.name, deliver, auto_ack=True, callback=lambda _f: done(None)
                    )

                channel.queue_declare(
                    declaration.name,
                    durable=declaration.durable,
                    exclusive=declaration.exclusive,
                    auto_delete=declaration.auto_delete,
                    arguments=dict(declaration.arguments),
                    callback=declared,
                )

            session.open_channel(on_open, on_error)

        session.call(operation, self.url.connect_timeout + 5, "subscribing to the reply queue")

    def close(self) -> None:
        """Close the connection and stop the I/O thread."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None and session.generation == _fork_generation:
            session.close()


def wait_confirm(future: Future[None], message: OutgoingMessage, timeout: float) -> None:
    """Wait for a publish future; a timeout becomes :class:`PublishNotConfirmed`."""
    try:
        future.result(timeout)
    except FutureTimeout:
        raise errors.not_confirmed(message, timeout) from None


def _with_queue_context(error: BaseException, declaration: QueueDeclaration) -> BaseException:
    if isinstance(error, ConnectionLost | BrokerUnreachable):
        return error
    code = getattr(error, "reply_code", 0)
    text = getattr(error, "reply_text", str(error))
    mismatch = ""
    if code == 406:
        mismatch = (
            f"; we wanted arguments {dict(declaration.arguments)!r}. Delete the queue, "
            f"or make the app declare what exists"
        )
    return errors.channel_error(code, f"{text}{mismatch}", f"queue {declaration.name!r}")
