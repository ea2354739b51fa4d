"""Sync transport: one pika ``SelectConnection`` on a private I/O thread.

pika connections are not thread-safe, and a ``BlockingConnection`` in confirm
mode waits one round trip per publish. So each :class:`SyncTransport` runs a
``SelectConnection`` on a daemon thread; any number of caller threads hand it
messages through a queue, and the I/O thread publishes them back to back in
confirm mode and resolves each caller's :class:`PendingConfirm` when the broker's
``basic.ack`` (possibly ``multiple``) arrives. Many threads, or one thread using
:meth:`SyncTransport.publish_nowait`, therefore pipeline their confirms.

Publishing is the hot path, so the caller's thread encodes each message's frames
(:mod:`amqptasks.transport._wire`, the bytes pika would write) and the I/O thread,
woken once for all the messages queued meanwhile, writes them in one go.

Every publish is ``mandatory``: RabbitMQ sends ``basic.return`` before the
``basic.ack`` of a message no queue took, and we turn that pair into
:class:`~amqptasks.exceptions.Unroutable`.
https://www.rabbitmq.com/docs/confirms#when-publishes-are-confirmed
The exception is :meth:`SyncTransport.publish_unconfirmed`, for messages that
nobody may be listening to (events): not mandatory, and nobody waits.

The connection opens lazily and is opened again after it was lost; a fork
(gunicorn, celery-style prefork) gets a fresh connection in the child. With a
cluster URL, each new connection goes to the next node that answers
(:class:`~amqptasks.transport.failover.NodeRing`). A transport that consumes
reply queues does not wait for the next publish: when its connection is lost
it reconnects in the background (with the shared backoff) and consumes the
same reply queues again, so results that arrived meanwhile (they wait in the
queue, which outlives its consumer by its ``x-expires``) reach callers already
waiting for them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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
from amqptasks.transport._session import Session
from amqptasks.transport._wire import EncodedPublish, encode_publish
from amqptasks.transport.confirms import PendingConfirm, wait_confirm
from amqptasks.transport.failover import NodeRing
from amqptasks.transport.reconnect import Backoff

if TYPE_CHECKING:
    from amqptasks.config import BrokerURL
    from amqptasks.protocol.envelope import OutgoingMessage
    from amqptasks.topology.model import QueueDeclaration

log = get_logger(__name__)

#: Called on the I/O thread with (properties, body) of each reply message.
ReplyCallback = Callable[[pika.spec.BasicProperties, bytes], None]

#: Seconds between attempts to consume again a reply queue that could not be
#: consumed after a reconnect (its node is down, say).
REPLY_RETRY_INTERVAL = 2.0


def _encode(message: OutgoingMessage, *, mandatory: bool = True) -> EncodedPublish:
    """The message's frames; raises :class:`ConfigError` for what AMQP cannot carry."""
    try:
        return encode_publish(message, mandatory=mandatory)
    except pika.exceptions.UnsupportedAMQPFieldException as exc:
        value = exc.args[-1] if exc.args else None
        raise ConfigError(
            f"message {message.message_id}: a header value has a type AMQP cannot carry: "
            f"{value!r} ({type(value).__name__})"
        ) from None
    except Exception as exc:  # a name over 255 bytes, an integer beyond 64 bits, ...
        raise ConfigError(f"message {message.message_id} cannot be encoded: {exc!r}") from exc


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
        self._session: Session | None = None
        self._ring = NodeRing(url)
        #: Reply queue name -> (its declaration, its callback), subscribed on each connection.
        self._replies: dict[str, tuple[QueueDeclaration, ReplyCallback]] = {}
        #: Set by :meth:`close`: a background reconnect stops waiting.
        self._stopped = threading.Event()
        self._reconnecting = False
        self._reconnect_lock = threading.Lock()  # not _lock: a caller may hold that a while
        #: Reply queues not consumed on the current connection yet, and the timer that
        #: tries them again.
        self._unsubscribed: set[str] = set()
        self._reply_timer: threading.Timer | None = None

    def _current(self) -> Session:
        session = self._session
        if session is not None and not session.closed and not session.forked:
            return session
        with self._lock:
            session = self._session
            if session is not None and session.forked:
                session = None  # forked: the parent's socket is not ours
            if session is None or session.closed:
                self._stopped.clear()
                session = self._ring.connect(
                    lambda node: Session(node, self.connection_name, on_lost=self._lost)
                )
                self._session = session
                if self._reply_timer is not None:  # it was for the previous connection
                    self._reply_timer.cancel()
                    self._reply_timer = None
                self._unsubscribed = set(self._replies)
                self._resubscribe(session)
            return session

    def _resubscribe(self, session: Session) -> None:
        """Consume the reply queues again on a new connection (lock held).

        A reply queue that cannot be consumed now (on a cluster, a classic queue
        whose node is down answers 404) must not stop publishing: a timer tries it
        again every :data:`REPLY_RETRY_INTERVAL` seconds; its replies wait in it.
        """
        for name in sorted(self._unsubscribed):
            declaration, callback = self._replies[name]
            try:
                self._consume_replies(session, declaration, callback)
            except BrokerError as exc:
                if session.closed:
                    raise
                (log.debug if self._reply_timer else log.warning)(
                    "cannot consume a reply queue after reconnecting; publishing goes on, "
                    "and its replies wait until it can be consumed again",
                    queue=name,
                    error=str(exc),
                )
            else:
                self._unsubscribed.discard(name)
        self._reply_timer = None
        if self._unsubscribed:
            self._reply_timer = threading.Timer(REPLY_RETRY_INTERVAL, self._retry_replies)
            self._reply_timer.daemon = True
            self._reply_timer.start()

    def _retry_replies(self) -> None:
        with self._lock:
            session = self._session
            if session is None or session.closed or session.forked:
                self._reply_timer = None  # the next connection subscribes them all
                return
            try:
                self._resubscribe(session)
            except BrokerError:  # the connection went: the next one subscribes them all
                self._reply_timer = None

    def _lost(self) -> None:
        """The connection died (I/O thread): reconnect now if reply queues are consumed."""
        with self._reconnect_lock:
            if not self._replies or self._reconnecting or self._stopped.is_set():
                return
            self._reconnecting = True
        threading.Thread(
            target=self._reconnect, name=f"amqptasks-reconnect-{self.connection_name}", daemon=True
        ).start()

    def _reconnect(self) -> None:
        """Open a new session (consuming the reply queues again), retrying with backoff."""
        backoff, failures, since = Backoff(), 0, time.monotonic()
        try:
            while not self._stopped.is_set():
                session = self._session
                if session is None:  # closed by close()
                    return
                try:
                    self._current()
                except AmqptasksError as exc:
                    failures += 1
                    log.warning(
                        "reply queues not consumed yet; retrying",
                        broker=self.url.redacted(),
                        attempts=failures,
                        error=str(exc),
                    )
                    self._stopped.wait(backoff.delay(failures))
                    continue
                log.info(
                    "reply queues consumed again",
                    broker=self.url.redacted(),
                    after_seconds=round(time.monotonic() - since, 3),
                )
                return
        finally:
            with self._reconnect_lock:
                self._reconnecting = False

    def publish_nowait(self, message: OutgoingMessage, *, flush: bool = True) -> PendingConfirm:
        """Hand ``message`` to the I/O thread; the result is in on the broker's confirm.

        The error is :class:`Unroutable`, :class:`PublishNotConfirmed`,
        :class:`ConnectionLost` (or a connection error), or :class:`ConfigError`
        for a header AMQP cannot carry.

        ``flush=False`` (for many messages in a row) saves waking the I/O thread
        for each: it takes them in groups every
        :data:`~amqptasks.transport._session.SWEEP_INTERVAL` seconds, and
        :meth:`flush` sends what is left at once.
        """
        try:
            encoded = _encode(message)
            session = self._current()
        except AmqptasksError as exc:
            return PendingConfirm.failed(exc)
        return session.submit(message, encoded, flush=flush)

    def publish_unconfirmed(self, message: OutgoingMessage) -> None:
        """Hand ``message`` to the I/O thread without ``mandatory`` and without waiting.

        For messages nobody may be listening to (events to an exchange no queue
        is bound to): the broker drops an unroutable one instead of returning it,
        so no :class:`Unroutable` is raised. The message still goes out on the
        confirm-mode channel, in order with the others, but its confirm is not
        waited for: a connection lost meanwhile loses it silently.

        Raises:
            ConfigError: a header AMQP cannot carry.
            BrokerUnreachable, AuthenticationFailed: no connection could be opened.
        """
        encoded = _encode(message, mandatory=False)
        self._current().submit(message, encoded)

    def flush(self) -> None:
        """Send what :meth:`publish_nowait` with ``flush=False`` left waiting."""
        session = self._session
        if session is not None and not session.forked:
            session.flush()

    def publish(self, message: OutgoingMessage, *, timeout: float | None = None) -> None:
        """Publish ``message`` and wait until the broker confirmed it (on disk).

        Raises:
            Unroutable: no queue took the message.
            PublishNotConfirmed: nacked, or no confirm within ``timeout``.
            BrokerUnreachable, AuthenticationFailed, ConnectionLost: connection problems.
        """
        wait_confirm(self.publish_nowait(message), message, timeout or self.publish_timeout)

    def consume_replies(self, declaration: QueueDeclaration, callback: ReplyCallback) -> None:
        """Declare a reply queue and deliver its messages to ``callback`` (I/O thread).

        A transport may consume several reply queues (results, control replies),
        each with its callback. The subscriptions are made again on every new
        connection.
        """
        with self._lock:
            self._replies[declaration.name] = (declaration, callback)
            session = self._session
        if session is None or session.closed or session.forked:
            self._current()  # a new session subscribes every reply queue, this one included
            return
        self._consume_replies(session, declaration, callback)

    def _consume_replies(
        self, session: Session, declaration: QueueDeclaration, callback: ReplyCallback
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
        self._stopped.set()
        with self._lock:
            session, self._session = self._session, None
            timer, self._reply_timer = self._reply_timer, None
        if timer is not None:
            timer.cancel()
        if session is not None and not session.forked:
            session.close()


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
