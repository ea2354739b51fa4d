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
import signal
from typing import TYPE_CHECKING

from amqptasks import signals
from amqptasks.exceptions import ChannelError, NotFound, TopologyMismatch
from amqptasks.logging import get_logger
from amqptasks.protocol import serializers
from amqptasks.security.extension import security_rules
from amqptasks.transport import aio
from amqptasks.transport.consumer import ConsumerLink
from amqptasks.transport.startup import connect_on_startup
from amqptasks.worker.checks import warn_about_consumer_timeouts
from amqptasks.worker.extension import WorkerContext
from amqptasks.worker.handler import DeliveryHandler
from amqptasks.worker.loading import load_extensions
from amqptasks.worker.options import WorkerOptions
from amqptasks.worker.pools import make_pool
from amqptasks.worker.prefetch import split_prefetch
from amqptasks.worker.rules import standard_rules
from amqptasks.worker.sender import Sender

if TYPE_CHECKING:
    from collections.abc import Sequence

    import aio_pika.abc

    from amqptasks.app import App
    from amqptasks.transport.consumer import Delivery
    from amqptasks.worker.extension import Extension

log = get_logger(__name__)

#: Exit codes of :meth:`Worker.run` (and of ``amqptasks worker``).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_COLD = 3
#: Seconds the last acks may take to leave at shutdown.
LAST_ACKS_TIMEOUT = 2.0


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
        extensions: Worker extensions (:class:`~amqptasks.worker.Extension`
            instances, classes or ``module:attribute`` paths), after those of the
            ``worker_extensions`` setting.

    Arguments left out (None) take the app's settings; :attr:`options` holds
    the result.

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
        extensions: Sequence[Extension | type[Extension] | str] = (),
    ) -> None:
        self.app = app
        #: Every option, resolved once (arguments over the app's settings).
        self.options = WorkerOptions.resolve(
            app.settings,
            queues=queues,
            concurrency=concurrency,
            pool=pool,
            prefetch_multiplier=prefetch_multiplier,
            hostname=hostname,
            shutdown_timeout=shutdown_timeout,
            app_path=app_path,
            max_tasks_per_child=max_tasks_per_child,
            max_memory_per_child=max_memory_per_child,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
        )
        options = self.options
        #: The worker's rules (and message security), then the settings' extensions, then these.
        self.extensions: list[Extension] = [
            *standard_rules(),
            *security_rules(app.settings),
            *load_extensions(app.settings.worker_extensions),
            *load_extensions(extensions),
        ]
        self._result_serializer = serializers.by_name(app.settings.result_serializer)
        #: Where plain-function tasks run (:mod:`amqptasks.worker.pools`).
        self.pool = make_pool(
            options.pool_name,
            options.concurrency,
            app=app,
            app_path=options.app_path,
            max_tasks_per_child=options.max_tasks_per_child,
            max_memory_per_child=options.max_memory_per_child,
        )
        self._handler: DeliveryHandler | None = None
        self._context: WorkerContext | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping: asyncio.Event | None = None
        self._cold: asyncio.Event | None = None
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._link: ConsumerLink | None = None
        #: The queues actually consumed (a queue whose topology differs is skipped).
        self.consuming: list[str] = []

    @property
    def hostname(self) -> str:
        """The node name (``worker@host``)."""
        return self.options.hostname

    @property
    def queues(self) -> list[str]:
        """The queues asked for."""
        return list(self.options.queues)

    @property
    def concurrency(self) -> int:
        """Tasks running at once."""
        return self.options.concurrency

    @property
    def handler(self) -> DeliveryHandler | None:
        """What runs each delivery through the extensions (None until started)."""
        return self._handler

    @property
    def prefetch_count(self) -> int:
        """Unacked deliveries this worker may hold, all queues together."""
        return self.options.prefetch_count

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
        self._connection = await connect_on_startup(
            url,
            f"{name} (publisher)",
            retry=self.app.settings.broker_connection_retry_on_startup,
            max_retries=self.app.settings.broker_connection_max_retries,
            log_outages=False,
        )
        self.consuming = await self._declare_queues()
        await warn_about_consumer_timeouts(self.app, self.consuming, self.options.time_limits.hard)
        await self.pool.start()  # before the first delivery can arrive
        sender = Sender(
            publisher=aio.AioPublisher(
                self._connection, url, publish_timeout=self.app.settings.publish_timeout
            ),
            call_client=self.app._aclient(),
            router=self.app.router,
            hostname=self.hostname,
            result_serializer=self._result_serializer,
        )
        self._handler = DeliveryHandler(
            self.app, self.options, sender=sender, pool=self.pool, extensions=self.extensions
        )
        self._stopping = self._handler.stopping
        self._context = WorkerContext(
            app=self.app,
            options=self.options,
            hostname=self.hostname,
            sender=sender,
            stopping=self._stopping,
        )
        for extension in self.extensions:
            await extension.on_worker_start(self._context)
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
            pool=self.options.pool_name,
            concurrency=self.concurrency,
            prefetch=self.prefetch_count,
            time_limits=self.options.time_limits.describe(),
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
        not_started = self.pool.withdraw_queued()
        if warm:
            log.info(
                "warm shutdown: finishing running tasks",
                running=(self._handler.running if self._handler else 0) - not_started,
                not_started=not_started,
                timeout=self.options.shutdown_timeout,
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
            await self._stop_extensions()
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
                {cold, finished},
                timeout=self.options.shutdown_timeout,
                return_when=asyncio.FIRST_COMPLETED,
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
        await self._stop_extensions()
        await self._close()
        log.info("worker stopped", hostname=self.hostname, exit_code=code)
        signals.worker_shutdown.send(self, worker=self, exit_code=code)
        return code

    async def _stop_extensions(self) -> None:
        context, self._context = self._context, None
        if context is None:
            return
        for extension in reversed(self.extensions):
            try:
                await extension.on_worker_stop(context)
            except Exception as exc:
                log.error(
                    "worker extension failed to stop",
                    extension=type(extension).__name__,
                    error=f"{type(exc).__name__}: {exc}",
                )

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
        await self.pool.close(cold=bool(self._cold and self._cold.is_set()))

    # -- deliveries ----------------------------------------------------------------------------

    def _on_message(self, message: Delivery) -> None:
        # A task per delivery: it runs the task, replies and settles.
        task = asyncio.ensure_future(self._handle(message))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _handle(self, message: Delivery) -> None:
        assert self._handler is not None
        await self._handler.handle(message, message.queue)
