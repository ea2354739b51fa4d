"""App: settings, the task registry and the producer clients."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Concatenate, Literal, TypeVar, overload

from amqptasks import _current, eager, signals
from amqptasks._client import AioClient, SyncClient
from amqptasks._retrypublish import PublishRetryPolicy
from amqptasks.config import Settings, settings_from_object
from amqptasks.exceptions import AmqptasksError, BatchPublishError, ConfigError, Unroutable
from amqptasks.publishing import PreparedCall, prepare_call
from amqptasks.registry import TaskRegistry
from amqptasks.results.buffer import ResultBuffer
from amqptasks.results.result import AsyncResult
from amqptasks.routing import Router
from amqptasks.task import P, R, Task, check_task_options, split_retry_options
from amqptasks.topology import delays
from amqptasks.topology.management import Management
from amqptasks.topology.model import Declarations

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator, Sequence

    from amqptasks.transport.confirms import PendingConfirm

T = TypeVar("T")


class App:
    """An amqptasks application: where tasks are registered and sent from.

    Args:
        main: The app's name (used in reply queue and connection names).
        broker_url: ``amqp://user:password@host:5672/vhost``; a cluster's nodes
            ``;``-separated or as a list (failover, see the configuration docs);
            overridden by the ``AMQPTASKS_BROKER_URL`` environment variable.
        config_source: A settings module/object (or its import path).
        **settings: Any :class:`~amqptasks.config.Settings` field.

    Example:
        >>> app = App("proj", broker_url="amqp://guest:guest@localhost:5672//")
        >>> @app.task
        ... def add(x, y): return x + y
    """

    def __init__(
        self,
        main: str = "amqptasks",
        broker_url: str | Sequence[str] | None = None,
        *,
        config_source: object | str | None = None,
        **settings: Any,
    ) -> None:
        self.main = main
        self._given: dict[str, Any] = {}
        if config_source is not None:
            self._given.update(settings_from_object(config_source))
        if broker_url is not None:
            self._given["broker_url"] = broker_url
        self._given.update(settings)
        self._settings = Settings.build(self._given)
        self._router = self._make_router()
        self.tasks = TaskRegistry()
        self.results = ResultBuffer()
        self._sync_client: SyncClient | None = None
        self._aio_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AioClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._batch = threading.local()
        self._eager_results = eager.EagerStore()
        _current.set_current(self)

    def __repr__(self) -> str:
        return f"<App {self.main} broker={self._settings.broker.redacted()}>"

    @property
    def settings(self) -> Settings:
        """The effective settings (defaults < code < ``AMQPTASKS_*`` environment)."""
        return self._settings

    def config_from_object(self, obj: object | str, *, namespace: str | None = None) -> None:
        """Load settings from a module, class or object, or its import path.

        Args:
            obj: The object, or ``"module"`` / ``"module:attribute"``.
            namespace: Read only the names with this prefix (``"AMQPTASKS"``:
                ``AMQPTASKS_BROKER_URL``), as in
                ``app.config_from_object("django.conf:settings", namespace="AMQPTASKS")``.

        Raises:
            ConfigError: an unknown name or bad value.
        """
        self._given.update(settings_from_object(obj, namespace))
        self._settings = Settings.build(self._given)
        self._router = self._make_router()

    def _make_router(self) -> Router:
        settings = self._settings
        return Router(
            queues=settings.queues,
            routes=settings.routes,
            default_queue=settings.default_queue,
            default_exchange=settings.default_exchange,
            default_queue_type=settings.default_queue_type,
            default_delivery_limit=settings.worker_max_deliveries,
        )

    @property
    def router(self) -> Router:
        """Resolves task names to exchanges, routing keys and queues."""
        return self._router

    def management(self) -> Management:
        """A client of the broker's management HTTP API (read-only)."""
        return Management(self._settings.management_url, self._settings.broker)

    def declarations(
        self, queues: Sequence[str] | None = None, *, include_delays: bool = False
    ) -> Declarations:
        """Everything the app (or only ``queues``) needs on the broker, in order.

        With ``include_delays``, also the shared delay levels and the hop queues
        that deliver delayed messages (countdown, eta, retries) to these queues.
        """
        settings = self._settings
        names = list(queues) if queues is not None else self.queue_names()
        total = Declarations()
        for name in names:
            total = total + self._router.queue(name).declarations(
                settings.default_queue_type, settings.worker_max_deliveries
            )
        if include_delays:
            prefix = settings.delay_prefix
            total = total + delays.infrastructure(prefix, settings.delay_queue_type)
            for name in names:
                route = self._router.resolve("", queue=name)
                # Retries go straight back to the queue; calls go along its route.
                total = total + delays.hop(prefix, "", name)
                total = total + delays.hop(prefix, route.exchange, route.routing_key)
        return total

    # -- tasks ------------------------------------------------------------------------------

    def queue_names(self) -> list[str]:
        """Every queue the app would use: those it defines, then those its tasks name.

        A task's queue is its ``queue=`` option or where its route sends it
        (``@app.task(queue="mail")`` needs no ``Queue("mail")``); tasks routed
        only per call by a router function are not known until they are sent.
        """
        names = dict.fromkeys(self._router.queues)
        for name in self.tasks:
            task = self.tasks.get(name)
            with contextlib.suppress(Exception):  # a router function needing the call
                route = self._router.resolve(name, task_queue=task.queue)
                if route.queue is not None:
                    names.setdefault(route.queue.name)
        return list(names) or [self._settings.default_queue]

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        /,
        *,
        bind: Literal[True],
        base: type[Task[Any, Any]] = ...,
        **options: Any,
    ) -> Callable[[Callable[Concatenate[Any, P], R]], Task[P, R]]: ...

    @overload
    def task(
        self,
        /,
        *,
        bind: Literal[False] = False,
        base: type[Task[Any, Any]] = ...,
        **options: Any,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self, fn: Callable[..., Any] | None = None, /, **options: Any
    ) -> Task[Any, Any] | Callable[[Callable[..., Any]], Task[Any, Any]]:
        """Register a function as a task: ``@app.task`` or ``@app.task(name=..., ...)``.

        Options: ``name``, ``queue``, ``ignore_result``, ``serializer``,
        ``compression``, ``acks_early``, ``bind``, ``priority``, the time and
        rate limits, the retry options, and ``base``: a :class:`Task` subclass
        to make the task from (as Celery's ``base=``); it is built with the
        same arguments as :class:`Task`.

        Raises:
            ConfigError: unknown option, unusable serializer, a ``base`` that is
                not a Task subclass, or a duplicate name.
        """
        check_task_options(options, self._settings.accept_content)
        task_class: type[Task[Any, Any]] = options.pop("base", None) or Task

        plain, failure_policy = split_retry_options(
            options,
            {
                "max_retries": self._settings.task_max_retries,
                "default_retry_delay": self._settings.task_default_retry_delay,
                "dead_letter_failures": self._settings.task_dead_letter_failures,
            },
        )

        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            name = plain.get("name") or self._default_name(func)
            task = task_class(self, func, **{**plain, "name": name}, failure_policy=failure_policy)
            self.tasks.add(task)
            return task

        if fn is not None:
            return register(fn)
        return register

    def autodiscover_tasks(
        self, packages: Sequence[str] | None = None, related_name: str = "tasks"
    ) -> None:
        """Import ``<package>.tasks`` of each package, the first time the tasks are needed.

        Without ``packages``, the packages are Django's installed apps
        (``django.setup()`` is called first if it was not, from
        ``DJANGO_SETTINGS_MODULE``), and the worker's database clean-up is set up
        (see docs/django.md). The imports wait until the app's tasks are first
        read, so this may be called while Django's settings are being imported.

        Example:
            >>> app.autodiscover_tasks()  # every INSTALLED_APPS' tasks.py
            >>> app.autodiscover_tasks(["proj.billing", "proj.mail"])
        """
        from amqptasks.discovery import loader

        self.tasks.add_loader(loader(self, packages, related_name))

    def _default_name(self, func: Callable[..., Any]) -> str:
        module = func.__module__
        if module == "__main__":
            module = self.main
        return f"{module}.{func.__name__}"

    def add_periodic_task(
        self, schedule: object, sig: object, name: str | None = None, **options: Any
    ) -> str:
        """Send ``sig`` (a task, its name, or a signature) on ``schedule``, as Celery's.

        Options: ``args``, ``kwargs``, ``options`` and any ``apply_async`` option
        (``queue``, ``priority``, ``expires``, ...), ``timezone``, ``catch_up``,
        ``catch_up_window``. See docs/periodic-tasks.md.

        Returns:
            The entry's name.

        Example:
            >>> app.add_periodic_task(crontab(minute=0, hour=3), "proj.nightly", name="nightly")
        """
        from amqptasks.beat.entries import add_code_entry

        return add_code_entry(self, schedule, sig, name=name, **options).name

    # -- sending ----------------------------------------------------------------------------

    def _prepare(self, options: dict[str, Any], reply_to: str) -> PreparedCall:
        return prepare_call(
            settings=self._settings, router=self._router, reply_to=reply_to, **options
        )

    def _client(self) -> SyncClient:
        with self._lock:
            if self._sync_client is None:
                self._sync_client = SyncClient(
                    self.main, self._settings, self.results, self._router, self.management()
                )
            return self._sync_client

    def _aclient(self) -> AioClient:
        loop = asyncio.get_running_loop()
        client = self._aio_clients.get(loop)
        if client is None:
            client = AioClient(
                self.main, self._settings, self.results, self._router, self.management()
            )
            self._aio_clients[loop] = client
        return client

    def _reply_queue(self) -> str:
        """The sync client's reply queue (where workflow steps frozen here report)."""
        return self._client().reply_queue

    async def _areply_queue(self) -> str:
        """The running loop's async client's reply queue."""
        return self._aclient().reply_queue

    def _result(self, call: PreparedCall) -> AsyncResult:
        return AsyncResult(
            call.message.message_id,
            store=self.results if call.wants_result else None,
            task_name=str(call.message.headers["task"]),
        )

    def _apply_eagerly(self, options: dict[str, Any]) -> AsyncResult:
        """``task_always_eager``: run the call here, as a worker would (see amqptasks.eager)."""
        return eager.apply(self._settings, self._router, self.tasks, self._eager_results, options)

    def _send(self, options: dict[str, Any]) -> AsyncResult:
        if eager.is_eager(self._settings, self.tasks, options):
            return self._apply_eagerly(options)
        policy = PublishRetryPolicy.resolve(
            self._settings, options.pop("retry", None), options.pop("retry_policy", None)
        )
        client = self._client()
        call = self._prepare(options, client.reply_queue)
        _before_publish(call)
        batch: list[tuple[PendingConfirm, PreparedCall]] | None
        batch = getattr(self._batch, "items", None)
        if batch is not None:
            batch.append((client.publish_nowait(call, flush=False), call))
            return self._result(call)
        attempts = policy.attempts(call.message.message_id)
        while True:
            try:
                client.publish(call)
                break
            except AmqptasksError as exc:
                time.sleep(attempts.wait_or_raise(exc))
        _after_publish(call)
        return self._result(call)

    async def _asend(self, options: dict[str, Any]) -> AsyncResult:
        if eager.is_eager(self._settings, self.tasks, options):
            return self._apply_eagerly(options)
        policy = PublishRetryPolicy.resolve(
            self._settings, options.pop("retry", None), options.pop("retry_policy", None)
        )
        client = self._aclient()
        call = self._prepare(options, client.reply_queue)
        _before_publish(call)
        attempts = policy.attempts(call.message.message_id)
        while True:
            try:
                await client.publish(call)
                break
            except AmqptasksError as exc:
                await asyncio.sleep(attempts.wait_or_raise(exc))
        _after_publish(call)
        return self._result(call)

    def _named_call(
        self, name: str, args: Any, kwargs: Any, options: dict[str, Any]
    ) -> dict[str, Any]:
        task = self.tasks.find(name)
        base = (
            {
                "priority": task.priority,
                "task_queue": task.queue,
                "task_serializer": task.serializer,
                "task_compression": task.compression,
                "task_ignore_result": task.ignore_result,
            }
            if task
            else {}
        )
        return {**base, "task_name": name, "args": args, "kwargs": kwargs, **options}

    def send_task(
        self, name: str, args: Any = None, kwargs: Any = None, **options: Any
    ) -> AsyncResult:
        """Send a task by name, without importing its code (as Celery's ``send_task``).

        Takes the same options as :meth:`Task.apply_async`.
        """
        return self._send(self._named_call(name, args, kwargs, options))

    async def asend_task(
        self, name: str, args: Any = None, kwargs: Any = None, **options: Any
    ) -> AsyncResult:
        """Async :meth:`send_task`."""
        return await self._asend(self._named_call(name, args, kwargs, options))

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Publish many messages from this thread without a round trip each.

        Inside the block ``delay``/``apply_async`` return at once; on leaving it,
        every confirm is awaited. Messages are pipelined on the connection.

        Raises:
            BatchPublishError: listing each message that was not confirmed.

        Example:
            >>> with app.batch():
            ...     results = [add.delay(i, i) for i in range(10_000)]
        """
        if getattr(self._batch, "items", None) is not None:
            yield  # nested: the outer batch waits
            return
        items: list[tuple[PendingConfirm, PreparedCall]] = []
        self._batch.items = items
        try:
            yield
        finally:
            self._batch.items = None
            failures = self._client().wait_all(items) if items else []
            failed = {getattr(failure, "message_id", None) for failure in failures}
            for future, call in items:
                # Returned ones were declared again and sent once more by wait_all.
                error = future.exception() if future.done() else None
                if call.message.message_id not in failed and (
                    error is None or isinstance(error, Unroutable)
                ):
                    _after_publish(call)
            if failures:
                raise BatchPublishError(failures)

    def close(self) -> None:
        """Close the sync producer connection (async ones: :meth:`aclose`)."""
        with self._lock:
            client, self._sync_client = self._sync_client, None
        if client is not None:
            client.close()

    async def aconnect(self) -> None:
        """Connect the running event loop's async producer now, not at the first send.

        Raises:
            BrokerUnreachable, AuthenticationFailed: the broker cannot be used.
        """
        client = self._aclient()
        await client._connect()
        await client._ensure_replies()

    async def aclose(self) -> None:
        """Close the async producer connection of the running event loop."""
        client = self._aio_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    def run_coroutine(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on a fresh event loop (scripts and the CLI)."""
        return asyncio.run(coro)


def _before_publish(call: PreparedCall) -> None:
    message = call.message
    signals.before_publish.send(
        message.headers.get("task"),
        task_id=message.message_id,
        exchange=message.exchange,
        routing_key=message.routing_key,
        headers=message.headers,
        message=message,
    )


def _after_publish(call: PreparedCall) -> None:
    message = call.message
    signals.after_publish.send(
        message.headers.get("task"),
        task_id=message.message_id,
        exchange=message.exchange,
        routing_key=message.routing_key,
    )


def check_app(obj: object, where: str) -> App:
    """Return ``obj`` if it is an :class:`App`, else raise a clear error."""
    if not isinstance(obj, App):
        raise ConfigError(f"{where} is a {type(obj).__name__}, not an amqptasks App")
    return obj
