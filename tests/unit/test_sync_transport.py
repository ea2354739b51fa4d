"""The sync transport's publish path, against a fake pika connection (no broker).

The fake runs an I/O loop on the transport's thread, decodes what the transport
writes with pika's own frame decoder, and answers like RabbitMQ: ``basic.return``
for a routing key nobody listens to, then ``basic.ack`` (``multiple``), or
``basic.nack`` for the routing key ``"nack"``.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar

import pika.exceptions
import pika.frame
import pika.spec
import pytest

from amqptasks.config import BrokerURL
from amqptasks.exceptions import ConfigError, ConnectionLost, PublishNotConfirmed, Unroutable
from amqptasks.protocol.envelope import OutgoingMessage, build_task_message
from amqptasks.transport import _session, sync
from amqptasks.transport.confirms import ConfirmTracker, PendingConfirm, wait_confirm

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


class FakeLoop:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._callbacks: list[Callable[[], None]] = []
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._stopped = False
        self.wakeups = 0

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        with self._cond:
            if self._stopped:
                raise RuntimeError("loop closed")
            self.wakeups += 1
            self._callbacks.append(callback)
            self._cond.notify()

    def call_soon(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._order), callback))

    def start(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                due = []
                while self._timers and self._timers[0][0] <= time.monotonic():
                    due.append(heapq.heappop(self._timers)[2])
                if not self._callbacks and not due:
                    wait = self._timers[0][0] - time.monotonic() if self._timers else 0.05
                    self._cond.wait(max(wait, 0.0))
                    continue
                callbacks, self._callbacks = self._callbacks, []
            for callback in [*callbacks, *due]:
                callback()

    def stop(self) -> None:
        self._stopped = True

    def close(self) -> None:
        with self._cond:
            self._stopped = True


class FakeChannel:
    def __init__(self, connection: FakeConnection, number: int) -> None:
        self.connection = connection
        self.channel_number = number
        self.is_open = True
        self.on_return: Callable[..., None] | None = None
        self.on_confirm: Callable[[Any], None] | None = None
        self.on_close: Callable[..., None] | None = None

    def add_on_return_callback(self, callback: Callable[..., None]) -> None:
        self.on_return = callback

    def add_on_close_callback(self, callback: Callable[..., None]) -> None:
        self.on_close = callback

    def close(self) -> None:
        """As pika's: closed now, the close callback on the loop (the session
        replaces a channel the broker nacked on)."""
        self.is_open = False
        reason = pika.exceptions.ChannelClosedByClient(200, "Normal shutdown")
        on_close = self.on_close
        if on_close is not None:
            self.connection.ioloop.call_soon(lambda: on_close(self, reason))

    def confirm_delivery(
        self, ack_nack_callback: Callable[[Any], None], callback: Callable[[Any], None]
    ) -> None:
        self.on_confirm = ack_nack_callback
        self.connection.ioloop.call_soon(lambda: callback(None))


class FakeConnection:
    """Stands in for amqptasks.transport._pika.SelectConnection."""

    instances: ClassVar[list[FakeConnection]] = []
    fail_writes: ClassVar[bool] = False

    def __init__(self, _parameters: Any, *, on_open_callback: Any, **_callbacks: Any) -> None:
        self.ioloop = FakeLoop()
        self.is_open = True
        self.is_opening = False
        self.body_max_length = 131072 - 8
        self.channels: list[FakeChannel] = []
        self.published: list[tuple[str, pika.spec.BasicProperties, bytes]] = []
        self.writes = 0
        self._tag = 0
        self._partial: dict[str, Any] = {}
        self.ioloop.call_soon(lambda: on_open_callback(self))
        FakeConnection.instances.append(self)

    def channel(self, on_open_callback: Callable[[FakeChannel], None]) -> None:
        channel = FakeChannel(self, len(self.channels) + 1)
        self.channels.append(channel)
        self.ioloop.call_soon(lambda: on_open_callback(channel))

    def close(self) -> None:
        self.is_open = False
        self.ioloop.stop()

    def write_frames(self, data: bytes, frame_count: int) -> None:
        if FakeConnection.fail_writes:
            raise OSError("broken pipe")
        self.writes += 1
        frames = []
        while data:
            used, frame = pika.frame.decode_frame(data)
            assert frame is not None and used
            frames.append(frame)
            data = data[used:]
        assert len(frames) == frame_count
        channel = self.channels[-1]
        assert all(frame.channel_number == channel.channel_number for frame in frames)
        for frame in frames:
            self._receive(channel, frame)
        # RabbitMQ acks in groups: one multiple ack for everything so far.
        method = pika.spec.Basic.Ack(delivery_tag=self._tag, multiple=True)
        self.ioloop.call_soon(lambda: channel.on_confirm(pika.frame.Method(1, method)))

    def _receive(self, channel: FakeChannel, frame: Any) -> None:
        if isinstance(frame, pika.frame.Method):
            assert frame.method.mandatory
            self._partial = {"key": frame.method.routing_key, "body": b""}
        elif isinstance(frame, pika.frame.Header):
            self._partial.update(properties=frame.properties, size=frame.body_size)
        else:
            self._partial["body"] += frame.fragment
        if "size" not in self._partial or len(self._partial["body"]) < self._partial["size"]:
            return
        partial, self._partial = self._partial, {}
        key, properties, body = partial["key"], partial["properties"], partial["body"]
        self.published.append((key, properties, body))
        self._tag += 1
        if key == "nowhere":
            returned = pika.spec.Basic.Return(312, "NO_ROUTE", "", key)
            assert channel.on_return is not None
            channel.on_return(channel, returned, properties, body)
        elif key == "nack":
            nack = pika.frame.Method(1, pika.spec.Basic.Nack(delivery_tag=self._tag))
            confirm = channel.on_confirm
            assert confirm is not None
            self.ioloop.call_soon(lambda: confirm(nack))


@pytest.fixture
def transport(monkeypatch: pytest.MonkeyPatch) -> Iterator[sync.SyncTransport]:
    monkeypatch.setattr(_session, "SelectConnection", FakeConnection)
    monkeypatch.setattr(FakeConnection, "instances", [])
    monkeypatch.setattr(FakeConnection, "fail_writes", False)
    url = BrokerURL.parse("amqp://guest:guest@127.0.0.1:1//")
    publisher = sync.SyncTransport(url, connection_name="test", publish_timeout=5)
    yield publisher
    publisher.close()


def _message(routing_key: str = "q", **options: Any) -> OutgoingMessage:
    return build_task_message(
        task="t.add",
        task_id=options.pop("task_id", None) or f"id-{routing_key}-{time.monotonic_ns()}",
        args=(1, 2),
        kwargs={},
        exchange="",
        routing_key=routing_key,
        **options,
    )


def test_a_publish_waits_for_its_confirm(transport: sync.SyncTransport) -> None:
    message = _message(task_id="one")
    transport.publish(message)
    (connection,) = FakeConnection.instances
    ((key, properties, body),) = connection.published
    assert (key, body) == ("q", message.body)
    assert properties.headers == message.headers
    assert properties.message_id == properties.correlation_id == "one"


def test_returned_and_nacked_messages_fail(transport: sync.SyncTransport) -> None:
    with pytest.raises(Unroutable, match="nowhere"):
        transport.publish(_message("nowhere"))
    with pytest.raises(PublishNotConfirmed, match="nacked"):
        transport.publish(_message("nack"))
    transport.publish(_message("q"))  # publishing goes on, on a new channel
    (connection,) = FakeConnection.instances
    assert len(connection.channels) == 2 and not connection.channels[0].is_open


def test_a_header_amqp_cannot_carry_fails_that_message_only(
    transport: sync.SyncTransport,
) -> None:
    bad = transport.publish_nowait(_message(extra_headers={"x-bad": {1, 2}}))
    with pytest.raises(ConfigError, match="cannot carry"):
        bad.result(1)
    transport.publish(_message("q"))


def test_lazy_publishes_go_out_without_a_flush(transport: sync.SyncTransport) -> None:
    transport.publish(_message())  # connected
    (connection,) = FakeConnection.instances
    wakeups = connection.ioloop.wakeups
    confirms = [transport.publish_nowait(_message(), flush=False) for _ in range(500)]
    # the first wakes the I/O thread, whose sweeps take the rest: no flush needed
    for confirm in confirms:
        confirm.result(2)
    assert connection.ioloop.wakeups - wakeups < 20  # (1 unless this thread stalled)
    assert len(connection.published) == 501
    assert connection.writes < 250  # written in groups, not one by one


def test_flush_sends_lazy_publishes_at_once(
    transport: sync.SyncTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_session, "SWEEP_INTERVAL", 60.0)
    transport.publish(_message())
    confirms = [transport.publish_nowait(_message(), flush=False) for _ in range(3)]
    started = time.monotonic()
    transport.flush()
    for confirm in confirms:
        confirm.result(5)
    assert time.monotonic() - started < 2


def test_many_threads_publish_through_one_connection(transport: sync.SyncTransport) -> None:
    errors: list[BaseException] = []

    def run(lane: int) -> None:
        try:
            for i in range(200):
                transport.publish(_message(task_id=f"{lane}-{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(lane,)) for lane in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    (connection,) = FakeConnection.instances
    ids = [properties.message_id for _key, properties, _body in connection.published]
    assert sorted(ids) == sorted(f"{lane}-{i}" for lane in range(8) for i in range(200))


def test_a_failed_write_is_connection_lost(transport: sync.SyncTransport) -> None:
    transport.publish(_message())
    FakeConnection.fail_writes = True
    with pytest.raises(ConnectionLost, match="broken pipe"):
        transport.publish(_message())


def test_publishing_after_close_reconnects(transport: sync.SyncTransport) -> None:
    transport.publish(_message())
    transport.close()
    transport.publish(_message())
    assert len(FakeConnection.instances) == 2


# -- the pieces ---------------------------------------------------------------------------


def test_pending_confirm_waits_until_resolved() -> None:
    confirm = PendingConfirm()
    assert not confirm.done()
    assert not confirm.wait(0.01)
    with pytest.raises(TimeoutError):
        confirm.result(0)
    threading.Timer(0.05, confirm.resolve).start()
    confirm.result(5)
    assert confirm.done() and confirm.exception() is None
    confirm.resolve(RuntimeError("too late"))  # the first answer stands
    assert confirm.exception() is None
    assert confirm.wait(None)


def test_pending_confirm_raises_its_error_to_every_waiter() -> None:
    error = ConnectionLost("gone")
    confirm = PendingConfirm.failed(error)
    for _ in range(2):
        with pytest.raises(ConnectionLost):
            confirm.result(0)
    assert confirm.exception() is error


def test_wait_confirm_turns_a_timeout_into_publish_not_confirmed() -> None:
    message = _message(task_id="slow")
    with pytest.raises(PublishNotConfirmed, match=r"slow.*within 0\.01s"):
        wait_confirm(PendingConfirm(), message, 0.01)


def test_tracker_resolves_multiple_acks_in_order() -> None:
    tracker = ConfirmTracker()
    waiters = [PendingConfirm() for _ in range(5)]
    messages = [_message(task_id=f"m{i}") for i in range(5)]
    for confirm, message in zip(waiters, messages, strict=True):
        tracker.track(confirm, message)
    tracker.returned("m1", "NO_ROUTE")
    tracker.confirmed(4, multiple=False, nacked=True)
    tracker.confirmed(3, multiple=True, nacked=False)
    assert [w.done() for w in waiters] == [True, True, True, True, False]
    assert isinstance(waiters[1].exception(), Unroutable)
    assert isinstance(waiters[3].exception(), PublishNotConfirmed)
    assert waiters[0].exception() is None and waiters[2].exception() is None
    tracker.fail_since(5, ConnectionLost("write failed"))
    assert isinstance(waiters[4].exception(), ConnectionLost)
    assert len(tracker) == 0
    tracker.restart()
    assert tracker.last_tag == 0


def test_a_forked_child_publishes_on_its_own_connection(transport: sync.SyncTransport) -> None:
    import os

    transport.publish(_message())
    pid = os.fork()
    if pid == 0:  # the child: the parent's I/O thread and socket are not ours
        code = 1
        try:
            transport.publish(_message())
            code = 0 if len(FakeConnection.instances) == 2 else 2
        finally:
            os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    transport.publish(_message())  # the parent's connection is untouched
    assert len(FakeConnection.instances) == 1
