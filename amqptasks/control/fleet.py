"""The worker's side of fleet operations: Celery's events, its pidbox, and sticky revokes.

One worker extension (:class:`Fleet`) does three things, each optional:

- **events** (``-E``): ``worker-online|heartbeat|offline`` and ``task-received|
  started|succeeded|failed|retried|rejected|revoked`` with Celery's fields, to the
  ``celeryev`` exchange (:mod:`amqptasks.control.events`), so Flower and
  ``celery events`` show amqptasks workers;
- **remote control** (``--control``): answers ``celery inspect`` / ``celery control``
  (and ``amqptasks inspect|control``) on the worker's pidbox queue
  (:mod:`amqptasks.control.pidbox`, :mod:`amqptasks.control.commands`);
- **revokes** (with remote control): reads the ``amqptasks.revokes`` stream before
  the first delivery and follows it; a revoked call is skipped as REVOKED
  (:mod:`amqptasks.control.revokes`).

It uses a connection of its own for declarations, events and replies, and a
:class:`~amqptasks.transport.consumer.ConsumerLink` for the pidbox queue, so the
task consumer's hot path carries none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import pika.spec

from amqptasks.control import commands
from amqptasks.control.book import TaskBook
from amqptasks.control.events import (
    EVENT_EXCHANGE,
    SOFTWARE_INFO,
    EventClock,
    EventStamp,
    event_message,
    events_message,
    make_event,
)
from amqptasks.control.pidbox import (
    ControlRequest,
    pidbox_declarations,
    pidbox_queue,
    reply_message,
)
from amqptasks.control.revokes import (
    DEFAULT_HOLD,
    RevokeLog,
    revoke_message,
    revokes_declarations,
)
from amqptasks.control.soon import Soon
from amqptasks.control.task_events import REVOKED, TaskEvents
from amqptasks.logging import get_logger
from amqptasks.results import states
from amqptasks.topology.model import Declarations
from amqptasks.transport import aio
from amqptasks.transport.consumer import ConsumerLink
from amqptasks.worker.decisions import Skip
from amqptasks.worker.extension import Extension, describe
from amqptasks.worker.outcome import Outcome
from amqptasks.worker.rules.ratelimits import RateLimits

if TYPE_CHECKING:
    import aio_pika.abc

    from amqptasks.app import App
    from amqptasks.transport.consumer import Delivery
    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.extension import WorkerContext
    from amqptasks.worker.options import WorkerOptions
    from amqptasks.worker.state import MessageState
    from amqptasks.worker.worker import Worker

__all__ = ["HEARTBEAT_INTERVAL", "Fleet", "attach"]

log = get_logger(__name__)

#: Seconds between two ``worker-heartbeat`` events (Celery's default).
HEARTBEAT_INTERVAL = 2.0
#: Seconds a task event waits to go out with the next ones (one message per batch).
EVENT_FLUSH_INTERVAL = 0.1
#: Task events sent in one message at most (about 220 bytes each), and at once when
#: that many are waiting: a busy worker sends one message per 340 calls or so (each
#: publish costs the loop about as much as building a hundred events).
EVENT_BATCH = 1024


def _signal_number(name: str | int | None) -> int:
    """``SIGTERM``, ``TERM``, ``15`` or None (SIGTERM) as a signal number."""
    if name is None or name == "":
        return int(signal.SIGTERM)
    if isinstance(name, int) or str(name).isdigit():
        return int(name)
    text = str(name).upper()
    return int(getattr(signal, text if text.startswith("SIG") else f"SIG{text}", signal.SIGTERM))


def attach(worker: Worker, *, events: bool = False, control: bool = False) -> Fleet | None:
    """Add a :class:`Fleet` extension to ``worker`` (before it starts); None when both are off."""
    if not events and not control:
        return None
    fleet = Fleet(worker, events=events, control=control)
    worker.extensions.append(fleet)
    return fleet


class Fleet(Extension):
    """Events, remote control and revokes for one worker (see the module docstring).

    Args:
        worker: The worker (for ``add_consumer``, ``cancel_consumer``, ``shutdown``
            and rate limits); None serves only what the hooks can see.
        events: Send Celery's events.
        control: Serve the pidbox and follow the revokes stream.
        heartbeat_interval: Seconds between two ``worker-heartbeat`` events.
    """

    def __init__(
        self,
        worker: Worker | None = None,
        *,
        events: bool = True,
        control: bool = True,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self.worker = worker
        self.events_enabled = events
        self.control = control
        self.heartbeat_interval = heartbeat_interval
        self.book = TaskBook()
        self.clock = EventClock()
        self.revokes = RevokeLog()
        self._context: WorkerContext | None = None
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._publisher: aio.AioPublisher | None = None
        self._link: ConsumerLink | None = None
        self._beating: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        #: Task events not sent yet (None while they are not sent: off, or not
        #: started), and the timer that sends them.
        self._events: TaskEvents | None = None
        self._flush_soon = Soon(EVENT_FLUSH_INTERVAL, self._flush)

    # -- what commands read ----------------------------------------------------------------------

    @property
    def app(self) -> App:
        """The worker's app."""
        assert self._context is not None
        return self._context.app

    @property
    def options(self) -> WorkerOptions:
        """The worker's resolved options."""
        assert self._context is not None
        return self._context.options

    @property
    def hostname(self) -> str:
        """The worker's node name."""
        assert self._context is not None
        return self._context.hostname

    def consumed_queues(self) -> list[str]:
        """The queues consumed now."""
        if self.worker is not None:
            return list(self.worker.consuming)
        return list(self.options.queues)

    # -- lifecycle -------------------------------------------------------------------------------

    async def on_worker_start(self, worker: WorkerContext) -> None:
        self._context = worker
        settings = worker.app.settings
        url = settings.broker
        self._connection = await aio.connect(
            url, f"amqptasks worker {worker.hostname} (fleet)", log_outages=False
        )
        self._publisher = aio.AioPublisher(
            self._connection, url, publish_timeout=settings.publish_timeout
        )
        declarations = Declarations()
        if self.events_enabled:
            declarations += Declarations(exchanges=(EVENT_EXCHANGE,))
        if self.control:
            declarations += pidbox_declarations(worker.hostname) + revokes_declarations()
        await aio.apply_declarations(self._connection, declarations, "declare", management=None)
        if self.control:
            await self.revokes.follow(self._connection)
            self._link = ConsumerLink(
                url,
                f"amqptasks worker {worker.hostname} (control)",
                self._on_control,
                prepare=self._redeclare_pidbox,
            )
            await self._link.open()
            await self._link.consume(pidbox_queue(worker.hostname), 10, callback=self._on_control)
        if self.events_enabled:
            self._send_task_events()
            await self.heartbeat("worker-online")
            self._beating = asyncio.ensure_future(self._beat(worker.stopping))

    def _send_task_events(self) -> None:
        self._events = TaskEvents(
            EventStamp(self.hostname, self.clock),
            send_soon=self._flush_soon.ask,
            send_now=self._flush,
            batch=EVENT_BATCH,
        )

    async def enable_events(self) -> None:
        """Send task events from now on (``control enable_events``)."""
        self.events_enabled = True
        if self._events is None and self._connection is not None:
            exchange = Declarations(exchanges=(EVENT_EXCHANGE,))
            await aio.apply_declarations(self._connection, exchange, "declare", management=None)
            self._send_task_events()

    def disable_events(self) -> None:
        """Stop sending task events (``control disable_events``); those waiting go out."""
        self.events_enabled = False
        self._flush()
        self._events = None

    async def on_worker_stop(self, worker: WorkerContext) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(BaseException):
                await self._beating
        if self._link is not None:
            await self._link.cancel()
            await self._link.close()
        self._flush()
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=2.0)
        if self.events_enabled and self._publisher is not None:
            with contextlib.suppress(Exception):
                await self.heartbeat("worker-offline")
        await self.revokes.close()
        if self._connection is not None and not self._connection.is_closed:
            with contextlib.suppress(Exception):
                await self._connection.close()

    async def _redeclare_pidbox(self, _queue: str) -> None:
        # The queue expired while the control connection was down: declare it again.
        assert self._connection is not None and self._context is not None
        await aio.wait_connected(self._connection, self.app.settings.broker, "pidbox queue")
        await aio.apply_declarations(
            self._connection, pidbox_declarations(self.hostname), "declare", management=None
        )

    async def _beat(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.heartbeat_interval)
            if stopping.is_set():
                return
            try:
                await self.heartbeat("worker-heartbeat")
            except Exception as exc:  # the connection is back soon; the next one goes
                log.debug("heartbeat not sent", error=describe(exc))

    async def heartbeat(self, type_: str) -> None:
        """Send a ``worker-*`` event now."""
        await self._send(
            type_,
            freq=self.heartbeat_interval,
            active=len(self.book.active()),
            processed=self.book.total,
            loadavg=[round(x, 2) for x in os.getloadavg()],
            **SOFTWARE_INFO,
        )

    async def _send(self, type_: str, **fields: Any) -> None:
        if self._publisher is None or not self._context:
            return
        event = make_event(type_, self.hostname, self.clock, **fields)
        await self._publisher.publish_unconfirmed(event_message(event))

    def _flush(self) -> None:
        """Send the task events waiting (about :data:`EVENT_BATCH` at most) in one message
        (a lost event is only logged at debug level)."""
        self._flush_soon.cancel()
        task_events = self._events
        if task_events is None:
            return
        events = task_events.take()
        if task_events.unstarted:  # calls not started yet: look again soon
            self._flush_soon.ask()
        if not events or self._publisher is None:
            return
        message = events_message(events)
        future = asyncio.ensure_future(self._publisher.publish_unconfirmed(message))
        self._pending.add(future)
        future.add_done_callback(self._sent)

    def _sent(self, future: asyncio.Future[Any]) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.debug("event not sent", error=describe(future.exception()))  # type: ignore[arg-type]

    # -- deliveries ------------------------------------------------------------------------------

    def on_decoded(self, state: MessageState) -> Decision | None:
        message = state.message
        assert message is not None
        if self.control and self.revokes.is_revoked(message.id):
            state.note(REVOKED, True)
            return Skip(report=Outcome(states.REVOKED))
        self.book.reserve(message.id, state)
        events = self._events
        if events is not None:
            events.received(state)
        return None

    def before_settle(self, state: MessageState, decision: Decision) -> None:
        message = state.message
        task_id = message.id if message is not None else state.task_id
        if task_id is None:
            return
        self.book.finish(task_id)
        events = self._events
        if events is not None:
            events.settled(state, task_id, decision, time.time())

    # -- remote control --------------------------------------------------------------------------

    def _on_control(self, delivery: Delivery) -> None:
        delivery.channel.write([pika.spec.Basic.Ack(delivery_tag=delivery.delivery_tag)])
        future = asyncio.ensure_future(self._serve(delivery))
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    async def _serve(self, delivery: Delivery) -> None:
        try:
            request = ControlRequest.parse(delivery.body, delivery.content_type, delivery.headers)
        except Exception as exc:
            log.warning("control message ignored", error=describe(exc))
            return
        if request is None or not request.is_for(self.hostname):
            return
        clock = (delivery.headers or {}).get("clock")
        if isinstance(clock, int):
            self.clock.adjust(clock)
        handler = commands.COMMANDS.get(request.method)
        if handler is None:
            answer: Any = {"error": f"No such control command: {request.method}"}
        else:
            try:
                answer = await handler(self, **request.arguments)
            except Exception as exc:
                log.warning("control command failed", method=request.method, error=describe(exc))
                answer = {"error": describe(exc)}
        log.info("control command", method=request.method)
        if request.wants_reply and self._publisher is not None:
            try:
                await self._publisher.publish_unconfirmed(
                    reply_message(request, self.hostname, answer, self.clock.forward())
                )
            except Exception as exc:
                log.warning("control reply not sent", method=request.method, error=describe(exc))

    # -- what control commands do ----------------------------------------------------------------

    async def revoke(self, task_ids: list[str], *, terminate: bool = False) -> None:
        """Revoke ``task_ids`` here and on the revokes stream (for every worker, now and later)."""
        message = revoke_message(task_ids, terminate=terminate)
        self.revokes.add(task_ids, time.time() + DEFAULT_HOLD)
        if self._publisher is not None and self.control:
            await self._publisher.publish(message)

    def terminate(
        self, task_ids: list[str], signal_name: str | int | None
    ) -> tuple[list[str], list[str]]:
        """Stop the running calls of ``task_ids`` as far as the pool can: returns the ids
        stopped and the running ids the pool could not stop."""
        signum = _signal_number(signal_name)
        stopped: list[str] = []
        left: list[str] = []
        pool = self.worker.pool if self.worker is not None else None
        for task_id in task_ids:
            entry = self.book.get(task_id)
            if entry is None or entry.started is None:
                continue
            if pool is not None and pool.terminate(task_id, signum):
                stopped.append(task_id)
            else:
                left.append(task_id)
        return stopped, left

    def forget_rate(self, task_name: str) -> None:
        """A task's rate limit changed: its bucket is made again from the new one."""
        if self.worker is None:
            return
        for extension in self.worker.extensions:
            if isinstance(extension, RateLimits):
                extension.limiter.forget(task_name)

    async def add_consumer(self, queue: str) -> str | None:
        """Consume ``queue`` too; returns an error text, or None."""
        worker = self.worker
        if worker is None or worker._link is None or self._connection is None:
            return "this worker cannot add consumers"
        if queue in worker.consuming:
            return f"already consuming from {queue!r}"
        settings = self.app.settings
        declared = self.app.router.queue(queue)
        mode = self.app.router.declare_mode(declared, settings.topology_mode)
        await aio.apply_declarations(
            self._connection,
            declared.declarations(settings.default_queue_type, settings.worker_max_deliveries),
            mode,
            management=None,
        )
        prefetch = max(1, self.options.prefetch_count // (len(worker.consuming) + 1))
        await worker._link.consume(queue, prefetch)
        worker.consuming.append(queue)
        return None

    async def cancel_consumer(self, queue: str) -> str | None:
        """Stop consuming ``queue``; returns an error text, or None."""
        worker = self.worker
        if worker is None or worker._link is None:
            return "this worker cannot cancel consumers"
        if queue not in worker.consuming:
            return f"not consuming from {queue!r}"
        await worker._link.cancel(queue)
        worker.consuming.remove(queue)
        return None

    def shutdown(self, reason: str) -> None:
        """Stop the worker warm."""
        log.warning("remote shutdown", reason=reason)
        if self.worker is not None:
            self.worker.stop_warm()
