"""The sync transport's connection: a pika ``SelectConnection`` on its own I/O thread.

A :class:`Session` is one connection attempt and its life. Caller threads hand it
encoded publishes through an outbox; the I/O thread writes them in batches and
resolves each caller's :class:`PendingConfirm` when the broker confirms it.
:class:`~amqptasks.transport.sync.SyncTransport` replaces a session that died or
that a fork left behind.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from typing import TYPE_CHECKING

import pika
import pika.channel
import pika.exceptions
import pika.frame
import pika.spec

from amqptasks.exceptions import BrokerError, BrokerUnreachable
from amqptasks.logging import get_logger
from amqptasks.transport import errors
from amqptasks.transport._pika import SelectConnection, connection_parameters
from amqptasks.transport._wire import EncodedPublish, append_frames
from amqptasks.transport.confirms import ConfirmTracker, PendingConfirm

if TYPE_CHECKING:
    from collections.abc import Callable

    from amqptasks.config import BrokerURL
    from amqptasks.protocol.envelope import OutgoingMessage

log = get_logger(__name__)

#: Seconds between the I/O thread's sweeps of messages published with ``flush=False``.
SWEEP_INTERVAL = 0.002

#: A message handed to the I/O thread: itself, its encoded frames, its waiter.
_Outgoing = tuple["OutgoingMessage", EncodedPublish, PendingConfirm]


_fork_generation = 0


def _after_fork() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork)


class Session:
    """One connection attempt and its life; replaced by a new one when it dies."""

    def __init__(
        self,
        url: BrokerURL,
        connection_name: str,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        #: Called on the I/O thread when the connection is lost (not when closed by us).
        self._on_lost = on_lost
        self._generation = _fork_generation
        self.closed = False
        self._closing = False
        self._name = connection_name
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._connection: SelectConnection | None = None
        self._channel: pika.channel.Channel | None = None
        self._confirms = ConfirmTracker()
        self._outbox: collections.deque[_Outgoing] = collections.deque()
        self._outbox_lock = threading.Lock()
        self._drain_scheduled = False  # a wake-up to drain the outbox is on its way
        self._sweeping = False  # the I/O thread sweeps the outbox (flush=False publishes)
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

    @property
    def forked(self) -> bool:
        """True in a child forked after this session opened: its socket is the parent's."""
        return self._generation != _fork_generation

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
            self.closed = True  # before failing the outbox: see submit()
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
            if self._on_lost is not None:
                self._on_lost()
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
        self._confirms.restart()
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
        if self._connection is not None and self._connection.is_open:
            # e.g. a publish to an exchange that does not exist (404), or a channel we
            # closed after a nack: what was sent on it fails (reported to its callers),
            # what waits in the outbox goes out on a new channel.
            self._confirms.fail_all(failure)
            self._connection.channel(on_open_callback=self._on_channel_open)
        else:
            self._fail_all(failure)

    def _on_return(
        self,
        _channel: pika.channel.Channel,
        method: pika.spec.Basic.Return,
        properties: pika.spec.BasicProperties,
        _body: bytes,
    ) -> None:
        if properties.message_id:
            self._confirms.returned(properties.message_id, method.reply_text)

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        nacked = isinstance(method, pika.spec.Basic.Nack)
        self._confirms.confirmed(method.delivery_tag, multiple=method.multiple, nacked=nacked)
        if nacked:
            self._replace_channel()

    def _replace_channel(self) -> None:
        """Publish on a new channel from now on: the broker nacked one of ours.

        On a cluster, a channel that published to a quorum queue while its leader
        was being replaced (RabbitMQ 3.10 after a ``kill -9`` of the leader's node)
        can go on nacking every publish to it for good, although a new channel is
        confirmed at once. Closing it fails its unconfirmed publishes with
        :class:`ConnectionLost` (retried under the same task id); the close callback
        opens the new channel, and what is queued meanwhile goes out on it.
        """
        channel = self._channel
        if channel is not None and channel.is_open:
            log.info("the broker nacked a publish; publishing on a new channel")
            channel.close()

    def _take_outbox(self) -> collections.deque[_Outgoing]:
        with self._outbox_lock:
            self._drain_scheduled = False
            batch, self._outbox = self._outbox, collections.deque()
        return batch

    def _drain_outbox(self) -> None:
        self._publish(self._take_outbox())

    def _start_sweep(self) -> None:
        self._drain_outbox()
        self._arm_sweep()

    def _arm_sweep(self) -> None:
        connection = self._connection
        if connection is not None and connection.is_open:
            connection.ioloop.call_later(SWEEP_INTERVAL, self._sweep)
        else:
            self._sweeping = False

    def _sweep(self) -> None:
        """Publish what lazy submits queued; again after a while, until none come."""
        with self._outbox_lock:
            batch, self._outbox = self._outbox, collections.deque()
            self._sweeping = bool(batch)
        if batch:
            self._publish(batch)
            self._arm_sweep()

    def _publish(self, batch: collections.deque[_Outgoing]) -> None:
        if not batch:
            return
        channel = self._channel
        connection = self._connection
        if channel is None or not channel.is_open or connection is None:
            if connection is not None and connection.is_open:
                with self._outbox_lock:  # the replacement channel sends them
                    self._outbox.extendleft(reversed(batch))
                return
            lost = errors.connection_lost(None, self.url, "publishing")
            for _message, _encoded, confirm in batch:
                confirm.resolve(lost)
            return
        confirms = self._confirms
        first_tag = confirms.last_tag + 1
        number = channel.channel_number
        body_max = connection.body_max_length
        out: list[bytes] = []
        frame_count = 0
        for message, encoded, confirm in batch:
            frame_count += append_frames(out.append, number, encoded, body_max)
            confirms.track(confirm, message)
        try:
            connection.write_frames(b"".join(out), frame_count)
        except Exception as exc:  # the transport is gone: the broker saw none of them
            confirms.fail_since(first_tag, errors.connection_lost(exc, self.url, "publishing"))

    def _fail_all(self, error: BrokerError) -> None:
        self._confirms.fail_all(error)
        self._fail_outbox(error)

    def _fail_outbox(self, error: BrokerError) -> None:
        for _message, _encoded, confirm in self._take_outbox():
            confirm.resolve(error)

    # -- caller threads ---------------------------------------------------------------------

    def submit(
        self, message: OutgoingMessage, encoded: EncodedPublish, *, flush: bool = True
    ) -> PendingConfirm:
        """Queue ``message`` for the I/O thread and wake it, unless a wake-up is on its way.

        ``flush=False``: the first such message wakes the I/O thread, which then
        sweeps the queue every :data:`SWEEP_INTERVAL` seconds while more come.
        """
        confirm = PendingConfirm()
        connection = self._connection
        if self.closed or connection is None:
            confirm.resolve(errors.connection_lost(None, self.url, "publishing"))
            return confirm
        callback: Callable[[], None] | None = None
        with self._outbox_lock:
            self._outbox.append((message, encoded, confirm))
            if flush:
                if not self._drain_scheduled:
                    self._drain_scheduled = True
                    callback = self._drain_outbox
            elif not self._sweeping:
                self._sweeping = True
                callback = self._start_sweep
        if callback is not None:
            try:
                connection.ioloop.add_callback_threadsafe(callback)
            except Exception as exc:  # the loop is gone
                self.closed = True
                self._fail_outbox(errors.connection_lost(exc, self.url, "publishing"))
        if self.closed:  # the I/O thread ended meanwhile and may have failed the outbox first
            self._fail_outbox(errors.connection_lost(None, self.url, "publishing"))
        return confirm

    def flush(self) -> None:
        """Publish what ``flush=False`` submits left queued, without waiting for a sweep."""
        connection = self._connection
        if not self._outbox:  # the caller's own submits are in it, or already taken
            return
        with self._outbox_lock:
            schedule = bool(self._outbox) and not self._drain_scheduled
            if schedule:
                self._drain_scheduled = True
        if schedule and connection is not None:
            with contextlib.suppress(Exception):  # the loop is gone: _run fails the outbox
                connection.ioloop.add_callback_threadsafe(self._drain_outbox)

    def call(
        self,
        operation: Callable[[Callable[[BaseException | None], None]], None],
        timeout: float,
        doing: str,
    ) -> None:
        """Run ``operation(done)`` on the I/O thread and wait for it to call ``done``."""
        confirm = PendingConfirm()
        done = confirm.resolve

        def start() -> None:
            try:
                operation(done)
            except Exception as exc:
                done(errors.connection_lost(exc, self.url, doing))

        connection = self._connection
        if self.closed or connection is None:
            raise errors.connection_lost(None, self.url, doing)
        connection.ioloop.add_callback_threadsafe(start)
        if not confirm.wait(timeout):
            raise BrokerError(
                f"broker at {self.url.redacted()} did not answer within {timeout:g}s while {doing}"
            )
        confirm.result()

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
