"""The worker: consume on one asyncio loop, run tasks, reply, then ack.

All broker I/O (heartbeats, deliveries, acks, replies) happens on the event
loop; sync task bodies run in a pool of threads or child processes
(:mod:`amqptasks.worker.pools`), so a long task never stalls a heartbeat.
Deliveries and acks go through pika on that loop
(:class:`~amqptasks.transport.consumer.ConsumerLink`, the hot path); results,
dead letters and declarations through an aio-pika connection beside it.
Each delivery is acked only after its task finished and its result was
confirmed by the broker (at-least-once); ``acks_early`` tasks are acked
before they run (at-most-once).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from typing import TYPE_CHECKING

from amqptasks import signals
from amqptasks.config import WORKER_POOLS
from amqptasks.exceptions import ChannelError, ConfigError, NotFound, TopologyMismatch
from amqptasks.logging import get_logger
from amqptasks.protocol import serializers
from amqptasks.transport import aio
from amqptasks.transport.consumer import ConsumerLink
from amqptasks.worker.checks import warn_about_consumer_timeouts
from amqptasks.worker.handler import DeliveryHandler
from amqptasks.worker.pools import make_pool
from amqptasks.worker.prefetch import split_prefetch
from amqptasks.worker.timelimits import TimeLimits, check_time_limits

if TYPE_CHECKING:
    from collections.abc import Sequence

    import aio_pika.abc

    from amqptasks.app import App
    from amqptasks.transport.consumer import Delivery

log = get_logger(__name__)

#: Exit codes of :meth:`Worker.run` (and of ``amqptasks worker``).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_COLD = 3
#: Seconds the last acks may take to leave at shutdown.
LAST_ACKS_TIMEOUT = 2.0


def expand_hostname(template: str | None) -> str:
    """Expand ``%h`` (host), ``%n`` (host name part), ``%d`` (domain), ``%p`` (pid)."""
    host = socket.gethostname()
    short, _, domain = host.partition(".")
    text = template or "worker@%h"
    return (
        text.replace("%h", host)
        .replace("%n", short)
        .replace("%d", domain)
        .replace("%p", str(os.getpid()))
    )


def default_concurrency(pool: str) -> int:
    """Threads: twice the CPUs (I/O-bound); processes: the CPUs; asyncio: 100; solo: 1."""
    cpus = os.cpu_count() or 1
    return {"asyncio": 100, "processes": cpus, "solo": 1}.get(pool, max(2, 2 * cpus))


class Worker:
    """Consumes task queues and runs their tasks.

    Args:
        app: The app whose tasks are run.
        queues: Queue names to consume (default: the app's default queue).
        concurrency: Tasks running at once.
        pool: ``threads``, ``processes``, ``asyncio`` or ``solo`` (``async def`` tasks
            always run on the loop).
        prefetch_multiplier: Unacked deliveries per worker = concurrency x this,
            divided between the consumed queues.
        hostname: Node name, ``%h`` expanded (default ``worker@%h``).
        shutdown_timeout: Seconds a warm shutdown waits for running tasks.
        app_path: ``module:attribute`` of the app, for the ``processes`` pool's
            children (default: found among the imported modules).
        max_tasks_per_child: ``processes``: replace a child after this many tasks.
        max_memory_per_child: ``processes``: replace a child above this resident KiB.
        time_limit: Default hard time limit of a task, in seconds.
        soft_time_limit: Default soft time limit of a task, in seconds.

    Example:
        >>> exit_code = asyncio.run(Worker(app, queues=["default"]).run())
    """

    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        pool: str | None = None,
        prefetch_multiplier: int | None = None,
        hostname: str | None = None,
        shutdown_timeout: float | None = None,
        app_path: str | None = None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
    ) -> None:
        settings = app.settings
        self.app = app
        self.queues = list(queues or [settings.default_queue])
        self.pool = pool or settings.worker_pool
        if self.pool not in WORKER_POOLS:
            raise ConfigError(f"pool must be one of {', '.join(WORKER_POOLS)}, got {self.pool!r}")
        asked = concurrency or settings.worker_concurrency
        if self.pool == "solo" and asked not in (None, 1):
            raise ConfigError(
                f"pool 'solo' runs one task at a time, but concurrency {asked} was asked "
                f"for: drop the concurrency or choose pool 'threads'"
            )
        self.concurrency = asked or default_concurrency(self.pool)
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")
        multiplier = prefetch_multiplier or settings.worker_prefetch_multiplier
        if multiplier < 1:
            raise ConfigError(f"prefetch multiplier must be >= 1, got {multiplier}")
        #: Unacked deliveries this worker may hold, all queues together.
        self.prefetch_count = self.concurrency * multiplier
        self.hostname = expand_hostname(hostname)
        self.shutdown_timeout = (
            shutdown_timeout if shutdown_timeout is not None else settings.worker_shutdown_timeout
        )
        hard = time_limit if time_limit is not None else settings.task_time_limit
        soft = soft_time_limit if soft_time_limit is not None else settings.task_soft_time_limit
        check_time_limits(soft, hard, "worker")
        #: The worker's default ``(soft, hard)`` time limits.
        self.time_limits = (soft, hard)
        self._result_serializer = serializers.by_name(settings.result_serializer)
        self.execution_pool = make_pool(
            self.pool,
            self.concurrency,
            app=app,
            app_path=app_path,
            max_tasks_per_child=max_tasks_per_child or settings.worker_max_tasks_per_child,
            max_memory_per_child=max_memory_per_child or settings.worker_max_memory_per_child,
        )
        self._handler: DeliveryHandler | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping: asyncio.Event | None = None
        self._cold: asyncio.Event | None = None
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._link: ConsumerLink | None = None
        #: The queues actually consumed (a queue whose topology differs is skipped).
        self.consuming: list[str] = []

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, check/declare the queues and start consuming.

        Raises:
            TopologyMismatch: listing every queue whose arguments differ.
            BrokerUnreachable, AuthenticationFailed: connection problems.
        """
        self._cold = asyncio.Event()
        url = self.app.settings.broker
        name = f"amqptasks worker {self.hostname}"
        # Results and dead letters; the consumer's connection below reports outages.
        self._connection = await aio.connect(url, f"{name} (publisher)", log_outages=False)
        self.consuming = await self._declare_queues()
        await warn_about_consumer_timeouts(self.app, self.consuming, self.time_limits[1])
        await self.execution_pool.start()  # before the first delivery can arrive
        self._handler = DeliveryHandler(
            self.app,
            hostname=self.hostname,
            publisher=aio.AioPublisher(
                self._connection, url, publish_timeout=self.app.settings.publish_timeout
            ),
            republisher=self.app._aclient(),
            pool=self.execution_pool,
            concurrency=self.concurrency,
            result_serializer=self._result_serializer,
            time_limits=self.time_limits,
        )
        self._stopping = self._handler.stopping
        self._link = ConsumerLink(url, name, self._on_message, prepare=self._redeclare)
        await self._link.open()
        for queue, prefetch in zip(
            self.consuming, split_prefetch(self.prefetch_count, len(self.consuming)), strict=True
        ):
            # Checked or declared above; after an outage, _redeclare runs first.
            await self._link.consume(queue, prefetch)
        log.info(
            "worker ready",
            hostname=self.hostname,
            queues=self.consuming,
            pool=self.pool,
            concurrency=self.concurrency,
            prefetch=self.prefetch_count,
            time_limits=TimeLimits(*self.time_limits).describe(),
        )
        signals.worker_ready.send(self, worker=self)

    async def _declare_queues(self) -> list[str]:
        """Check/declare each queue on its own channel; return the usable ones.

        A queue that exists with other arguments is reported (every one at once,
        with the differences) and not consumed; the others are served. When no
        queue is usable the worker cannot do anything and raises.
        """
        assert self._connection is not None
        settings = self.app.settings
        usable: list[str] = []
        problems: list[TopologyMismatch | NotFound] = []
        for name in self.queues:
            queue = self.app.router.queue(name)
            mode = self.app.router.declare_mode(queue, settings.topology_mode)
            try:
                await aio.apply_declarations(
                    self._connection,
                    queue.declarations(settings.default_queue_type, settings.worker_max_deliveries),
                    mode,
                    management=self.app.management(),
                )
            except (TopologyMismatch, NotFound) as exc:
                problems.append(exc)
            else:
                usable.append(name)
        if problems and usable:
            log.error(
                "not consuming queues whose topology differs; serving the others",
                skipped=[q for q in self.queues if q not in usable],
                serving=usable,
                error="\n".join(str(p) for p in problems),
            )
        elif problems:
            kind = type(problems[0]) if len({type(p) for p in problems}) == 1 else ChannelError
            raise kind(
                "\n".join(str(p) for p in problems),
                reply_code=problems[0].reply_code,
                reply_text=problems[0].reply_text,
            )
        return usable

    async def _redeclare(self, name: str) -> None:
        """Before consuming ``name`` again: in ``declare`` mode, declare its topology again
        (it may have been deleted meanwhile); the other modes leave it to the operator."""
        assert self._connection is not None
        settings = self.app.settings
        queue = self.app.router.queue(name)
        mode = self.app.router.declare_mode(queue, settings.topology_mode)
        if mode != "declare":
            return
        await aio.wait_connected(self._connection, settings.broker, f"declaring queue {name!r}")
        await aio.apply_declarations(
            self._connection,
            queue.declarations(settings.default_queue_type, settings.worker_max_deliveries),
            mode,
            management=None,
        )

    def stop(self, *, cold: bool = False) -> None:
        """Ask the worker to stop: warm (finish running tasks) or cold (now)."""
        if self._stopping is None or self._cold is None:
            return
        warm = not cold and not self._stopping.is_set()
        self._stopping.set()
        # Calls the pool queued but has not started go back to their queues now.
        not_started = self.execution_pool.withdraw_queued()
        if warm:
            log.info(
                "warm shutdown: finishing running tasks",
                running=(self._handler.running if self._handler else 0) - not_started,
                not_started=not_started,
                timeout=self.shutdown_timeout,
            )
        else:
            log.warning("cold shutdown: running tasks are abandoned and redelivered later")
            self._cold.set()

    def stop_warm(self) -> None:
        """Ask for a warm shutdown; asking again while it runs changes nothing."""
        if self._stopping is None or not self._stopping.is_set():
            self.stop()

    def install_signal_handlers(self, *, escalate: bool = True) -> None:
        """SIGTERM/SIGINT: warm stop, a second one cold (with ``escalate``; without, any
        number of them is one warm stop); SIGQUIT: cold."""
        loop = asyncio.get_running_loop()
        warm = self.stop if escalate else self.stop_warm
        loop.add_signal_handler(signal.SIGTERM, warm)
        loop.add_signal_handler(signal.SIGINT, warm)
        loop.add_signal_handler(signal.SIGQUIT, lambda: self.stop(cold=True))

    async def run(self, *, handle_signals: bool = False, escalate: bool = True) -> int:
        """Start, consume until stopped, shut down; return the exit code.

        With ``handle_signals``, once consuming, signals stop the worker as
        :meth:`install_signal_handlers` says (``escalate`` is passed on).
        """
        try:
            await self.start()
        except BaseException:
            await self._close()
            raise
        if handle_signals:
            self.install_signal_handlers(escalate=escalate)
        assert self._stopping is not None and self._cold is not None
        await self._stopping.wait()
        code = await self._shutdown()
        return code

    async def _shutdown(self) -> int:
        assert self._cold is not None
        if self._link is not None:
            await self._link.cancel()
        code = EXIT_OK
        if self._inflight and not self._cold.is_set():
            cold = asyncio.ensure_future(self._cold.wait())
            finished = asyncio.ensure_future(asyncio.wait(set(self._inflight)))
            await asyncio.wait(
                {cold, finished}, timeout=self.shutdown_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            cold.cancel()
            finished.cancel()
        remaining = [t for t in self._inflight if not t.done()]
        if remaining:
            log.warning(
                "tasks still running at shutdown; their messages go back to the queue",
                count=len(remaining),
            )
            code = EXIT_COLD
        await self._close()
        log.info("worker stopped", hostname=self.hostname, exit_code=code)
        signals.worker_shutdown.send(self, worker=self, exit_code=code)
        return code

    async def _close(self) -> None:
        if self._handler is not None:
            try:  # the last acks, before the connection closes
                await asyncio.wait_for(self._handler.acks.drain(), LAST_ACKS_TIMEOUT)
            except asyncio.TimeoutError:
                log.debug("last acks not written; the broker will redeliver those messages")
        await self.app.aclose()  # the republishing client of this loop
        link, self._link = self._link, None
        if link is not None:
            await link.close()
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            try:
                await connection.close()
            except Exception as exc:
                log.debug("close failed", error=str(exc))
        # After the connection: what a killed child leaves unacked is back in its queue.
        await self.execution_pool.close(cold=bool(self._cold and self._cold.is_set()))

    # -- deliveries ----------------------------------------------------------------------------

    def _on_message(self, message: Delivery) -> None:
        # A task per delivery: it runs the task, replies and settles.
        task = asyncio.ensure_future(self._handle(message))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _handle(self, message: Delivery) -> None:
        assert self._handler is not None
        await self._handler.handle(message, message.queue)
