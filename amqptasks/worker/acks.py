"""Settle each delivery exactly once: ack, requeue, or reject to the DLX.

Settlements are not written one frame at a time: they are queued and sent by
one task, which turns every run of acks that covers the channel's oldest
unsettled deliveries into a single ``basic.ack`` with ``multiple=True`` and
writes the rest in the same frame batch. Acks are therefore sent a loop turn
later than they are asked for, never earlier, and in the order asked.

While the worker has work waiting to start (deliveries waiting for a free slot,
or calls in its pool's queue), its prefetch window is not what keeps it busy, so
acks are held a little longer to join a bigger batch: until half the prefetch
budget is waiting to be sent, the deliveries waiting for a slot have all got one,
or :data:`HOLD_TIMEOUT` passed. Each ack frame makes the broker
send a batch of deliveries, and small batches cost both sides CPU: with
no-op tasks under the threads pool this cuts the worker's and the broker's CPU
per task by about a tenth (``tests/bench``). A settlement that must be written
(acks-early) is never held.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from typing import TYPE_CHECKING, Literal

from pika.spec import Basic

from amqptasks.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable

    from amqptasks.transport.consumer import ConsumerChannel, Delivery, SettlementMethod

log = get_logger(__name__)

Action = Literal["ack", "requeue", "reject"]
#: Seconds written settlements may stay in the connection's buffer: longer means the
#: connection is dead (a new one has its own buffer; the broker redelivers).
WRITE_TIMEOUT = 10.0
#: Seconds between two looks at a write buffer that is not empty yet.
FLUSH_POLL = 0.001
#: Longest a settlement is held back to join a bigger batch (see the module docstring).
HOLD_TIMEOUT = 0.001


class _ChannelState:
    """Deliveries of one AMQP channel (delivery tags are per channel) not settled yet."""

    __slots__ = ("channel", "ops", "unsettled", "waiters")

    def __init__(self, channel: ConsumerChannel) -> None:
        self.channel = channel
        self.unsettled: set[int] = set()
        self.ops: list[tuple[Action, int]] = []
        #: Resolved once the frames of ``ops`` are written to the socket.
        self.waiters: list[asyncio.Future[None]] = []


def settlement_frames(unsettled: set[int], ops: list[tuple[Action, int]]) -> list[SettlementMethod]:
    """The frames for ``ops`` in order; removes their tags from ``unsettled``.

    Consecutive acks are merged: the longest run of them that are exactly the
    oldest unsettled tags becomes one ``multiple=True`` ack; a multiple ack
    never covers a delivery that is still running or is nacked later.
    """
    frames: list[SettlementMethod] = []
    acks: list[int] = []

    def flush_acks() -> None:
        if not acks:
            return
        acked = set(acks)
        # Every unsettled tag below the oldest one not acked here is acked here.
        not_acked = min((tag for tag in unsettled if tag not in acked), default=None)
        acks.sort()
        covered = len(acks) if not_acked is None else bisect.bisect_left(acks, not_acked)
        if covered > 1:
            frames.append(Basic.Ack(delivery_tag=acks[covered - 1], multiple=True))
        else:
            covered = 0
        frames.extend(Basic.Ack(delivery_tag=tag) for tag in acks[covered:])
        unsettled.difference_update(acks)
        acks.clear()

    seen: set[int] = set()
    for action, tag in ops:
        if tag not in unsettled or tag in seen:
            continue  # settled already, or delivered on a channel since closed
        seen.add(tag)
        if action == "ack":
            acks.append(tag)
            continue
        flush_acks()
        unsettled.discard(tag)
        if action == "requeue":
            frames.append(Basic.Nack(delivery_tag=tag, requeue=True))
        else:
            frames.append(Basic.Reject(delivery_tag=tag, requeue=False))
    flush_acks()
    return frames


class AckBatcher:
    """Sends the worker's settlements, batched per channel (see the module docstring).

    Args:
        hold_while: True while the worker has work waiting to start: settlements
            may then be held back (at most :data:`HOLD_TIMEOUT` seconds); the worker
            calls :meth:`stop_holding` when that work is all started.
        hold_limit: Settlements that are sent at once, however busy the worker
            (half its prefetch budget; below 2, nothing is held).
    """

    def __init__(
        self, *, hold_while: Callable[[], bool] | None = None, hold_limit: int = 0
    ) -> None:
        self._hold_while = hold_while
        self._hold_limit = hold_limit
        self._release: asyncio.Future[None] | None = None
        self._channels: dict[ConsumerChannel, _ChannelState] = {}
        self._waiting: deque[_ChannelState] = deque()
        self._sender: asyncio.Task[None] | None = None
        #: Waits for settlements an acks-early task needs written, in a full buffer.
        self._watchers: set[asyncio.Future[None]] = set()

    @property
    def hold_limit(self) -> int:
        """Unsent settlements that are sent at once, however busy the worker."""
        return self._hold_limit

    def delivered(self, message: Delivery) -> Settlement:
        """Register a delivery; the returned :class:`Settlement` settles it once."""
        channel = message.channel
        if channel.is_closed:  # the broker requeued it already
            return Settlement(message, None, 0, self)
        state = self._channels.get(channel)
        if state is None:
            self._prune()  # a new channel: the broker requeued what older ones held
            state = self._channels[channel] = _ChannelState(channel)
        tag = message.delivery_tag
        state.unsettled.add(tag)
        return Settlement(message, state, tag, self)

    def settle(
        self, state: _ChannelState, action: Action, tag: int, *, written: bool = False
    ) -> asyncio.Future[None] | None:
        """Queue a settlement; with ``written``, a future resolved once it left the worker."""
        if not state.ops:
            self._waiting.append(state)
        state.ops.append((action, tag))
        waiter = None
        if written:
            waiter = asyncio.get_running_loop().create_future()
            state.waiters.append(waiter)
        if written or self._unsent() >= self._hold_limit:
            self.stop_holding()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send())
        return waiter

    def stop_holding(self) -> None:
        """Send the settlements held back now (the worker has no work waiting any more)."""
        release = self._release
        if release is not None and not release.done():
            release.set_result(None)

    def _unsent(self) -> int:
        """Settlements asked for and not written yet."""
        return sum(len(state.ops) for state in self._waiting)

    def _may_hold(self) -> bool:
        return (
            self._hold_while is not None
            and self._unsent() < self._hold_limit
            and not any(state.waiters for state in self._waiting)
            and self._hold_while()
        )

    async def _hold(self) -> None:
        loop = asyncio.get_running_loop()
        self._release = release = loop.create_future()
        timer = loop.call_later(HOLD_TIMEOUT, _resolve, [release])
        try:
            await release
        finally:
            timer.cancel()
            self._release = None

    async def _send(self) -> None:
        await asyncio.sleep(0)  # let the calls finishing in this loop turn join the batch
        if self._may_hold():
            await self._hold()
        while self._waiting:
            state = self._waiting.popleft()
            ops, state.ops = state.ops, []
            waiters, state.waiters = state.waiters, []
            channel = state.channel
            if channel.is_closed:
                _resolve(waiters)
                log.debug("settling failed; the broker will redeliver", count=len(ops))
                continue
            frames = settlement_frames(state.unsettled, ops)
            try:
                if frames:
                    channel.write(frames)
            except Exception as exc:  # the connection went away: redelivered later
                log.debug("settling failed; the broker will redeliver", error=str(exc))
                _resolve(waiters)
                continue
            if waiters:
                if channel.unsent:
                    watcher = asyncio.ensure_future(_resolve_when_flushed(channel, waiters))
                    self._watchers.add(watcher)
                    watcher.add_done_callback(self._watchers.discard)
                else:
                    _resolve(waiters)

    def _prune(self) -> None:
        """Forget channels that closed (their deliveries went back to the broker)."""
        self._channels = {s.channel: s for s in self._open()}

    async def drain(self) -> None:
        """Wait until every settlement asked for so far is written (before closing)."""
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)
        for state in self._open():
            await _flushed(state.channel)

    def _open(self) -> list[_ChannelState]:
        return [s for s in self._channels.values() if not s.channel.is_closed]


class Settlement:
    """One delivery, settled at most once through its worker's :class:`AckBatcher`.

    After a reconnect the delivery tag belongs to a dead channel; settling then
    does nothing (the broker has already put the message back).
    """

    __slots__ = ("_batcher", "_state", "_tag", "message", "settled")

    def __init__(
        self,
        message: Delivery,
        state: _ChannelState | None,
        tag: int,
        batcher: AckBatcher,
    ) -> None:
        self.message = message
        self.settled = False
        self._state = state
        self._tag = tag
        self._batcher = batcher

    async def ack(self, *, written: bool = False) -> None:
        """Acknowledge: the broker forgets the message.

        Args:
            written: Return only once the ack has left the worker (acks-early tasks:
                a crash while the task runs must not bring the message back).
        """
        waiter = self._settle("ack", written=written)
        if waiter is not None:
            try:  # a connection that died meanwhile never writes it: it is redelivered
                await asyncio.wait_for(waiter, WRITE_TIMEOUT)
            except asyncio.TimeoutError:
                log.debug("ack not written; the broker will redeliver")

    async def requeue(self) -> None:
        """Give the message back to the queue, unstarted."""
        self._settle("requeue")

    async def reject(self) -> None:
        """Reject without requeue: the queue's dead-letter exchange takes it."""
        self._settle("reject")

    def _settle(self, action: Action, *, written: bool = False) -> asyncio.Future[None] | None:
        if self.settled:
            return None
        self.settled = True
        if self._state is None:  # its channel had closed when it was delivered
            return None
        return self._batcher.settle(self._state, action, self._tag, written=written)


def _resolve(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


async def _flushed(channel: ConsumerChannel) -> None:
    """Wait until the channel's connection handed its buffer to the kernel, or closed."""
    while channel.unsent:
        await asyncio.sleep(FLUSH_POLL)


async def _resolve_when_flushed(
    channel: ConsumerChannel, waiters: list[asyncio.Future[None]]
) -> None:
    try:
        await asyncio.wait_for(_flushed(channel), WRITE_TIMEOUT)
    except asyncio.TimeoutError:
        log.debug("settlements not written; the broker will redeliver")
    finally:
        _resolve(waiters)
