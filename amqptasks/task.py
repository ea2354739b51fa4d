"""Task: a function registered with an app, callable locally or through the broker."""

from __future__ import annotations

import inspect
import warnings
from typing import TYPE_CHECKING, Any, Generic, NoReturn, ParamSpec, TypeVar

from typing_extensions import Unpack

from amqptasks.exceptions import ConfigError, Retry
from amqptasks.policies.limits import check_priority, check_time_limits, parse_rate_limit
from amqptasks.policies.retry import RetryPolicy
from amqptasks.protocol.compression import codec
from amqptasks.protocol.serializers import check_accepted
from amqptasks.publishing import PUBLISH_OPTION_NAMES, PublishOptions
from amqptasks.request import Request, current_request

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from amqptasks.canvas import Signature
    from amqptasks.results.result import AsyncResult
    from amqptasks.typing import TaskSender

P = ParamSpec("P")
R = TypeVar("R")


class Task(Generic[P, R]):
    """A registered task. Made by ``@app.task``; not instantiated directly.

    Calling the task runs the function here and now; :meth:`delay` and
    :meth:`apply_async` (and their async twins) send it to a worker.

    Example:
        >>> @app.task
        ... def add(x: int, y: int) -> int: return x + y
        >>> add.delay(2, 3).get(timeout=10)
        5
    """

    def __init__(
        self,
        app: TaskSender,
        fn: Callable[..., R],
        *,
        name: str,
        queue: str | None = None,
        ignore_result: bool | None = None,
        serializer: str | None = None,
        compression: str | None = None,
        acks_early: bool | None = None,
        bind: bool = False,
        priority: int | None = None,
        failure_policy: RetryPolicy | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        rate_limit: str | float | None = None,
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.queue = queue
        self.ignore_result = ignore_result
        self.serializer = serializer
        self.compression = compression
        self.acks_early = acks_early
        self.bind = bind
        self.priority = priority
        #: What a failure of this task leads to: another attempt, the dead-letter
        #: queue, or a FAILURE only (``max_retries``, ``autoretry_for``, backoff ...).
        #: Not the publisher's retries (``apply_async(retry_policy=)``).
        self.failure_policy = failure_policy or RetryPolicy()
        #: Hard time limit in seconds (the call is stopped), or None for the worker's.
        self.time_limit = time_limit
        #: Soft time limit in seconds (SoftTimeLimitExceeded is raised in the task).
        self.soft_time_limit = soft_time_limit
        #: ``"10/s"``, ``"100/m"``, ``"1000/h"``: calls started per worker, at most.
        self.rate_limit = rate_limit
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__module__ = fn.__module__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function in this process (no broker involved)."""
        if self.bind:
            return self.fn(self, *args, **kwargs)
        return self.fn(*args, **kwargs)

    def retry(
        self,
        exc: BaseException | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
    ) -> NoReturn:
        """Ask for another attempt of the running call (in a ``bind=True`` task).

        The worker republishes the message through the broker's delay levels
        (``countdown`` seconds, or the task's backoff) before it acks this one;
        past ``max_retries`` the message goes to the dead-letter queue.

        Raises:
            Retry: always; let it propagate out of the task.

        Example:
            >>> @app.task(bind=True)
            ... def fetch(self, url):
            ...     try: ...
            ...     except IOError as exc: self.retry(exc=exc, countdown=10)
        """
        raise Retry(exc=exc, countdown=countdown, max_retries=max_retries)

    @property
    def retry_policy(self) -> RetryPolicy:
        """Deprecated name of :attr:`failure_policy`.

        ``retry_policy`` is the publisher's retries in ``apply_async``, as in Celery.
        """
        warnings.warn(
            "Task.retry_policy is now Task.failure_policy (retry_policy= in apply_async "
            "is the publisher's retries)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.failure_policy

    @property
    def request(self) -> Request:
        """The call being executed (id, retries, ...); only valid inside the task."""
        request = current_request.get()
        if request is None or request.task != self.name:
            return Request(id="", task=self.name, is_eager=True)
        return request

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Send the task with these arguments; shortcut for :meth:`apply_async`.

        Returns:
            An :class:`AsyncResult`; ``.get()`` waits for the value.
        """
        return self.apply_async(args, kwargs)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Async :meth:`delay` (aio-pika): ``r = await add.adelay(2, 3)``."""
        return await self.aapply_async(args, kwargs)

    def _options(
        self,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        options: Mapping[str, Any],
    ) -> dict[str, Any]:
        unknown = set(options) - PUBLISH_OPTION_NAMES
        if unknown:
            raise TypeError(f"unknown option(s) for {self.name}: {', '.join(sorted(unknown))}")
        return {
            "task_name": self.name,
            "task_queue": self.queue,
            "task_serializer": self.serializer,
            "task_compression": self.compression,
            "task_ignore_result": self.ignore_result,
            "priority": self.priority,
            "args": args,
            "kwargs": kwargs,
            **{key: value for key, value in options.items() if value is not None},
        }

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Unpack[PublishOptions],
    ) -> AsyncResult:
        """Send the task, waiting until the broker confirmed the message.

        Args:
            args: Positional arguments.
            kwargs: Keyword arguments.
            **options: See :class:`~amqptasks.PublishOptions`: ``task_id``,
                ``queue``, ``exchange``, ``routing_key``, ``priority``,
                ``expires``, ``headers``, ``serializer``, ``compression``,
                ``ignore_result``, ``countdown``, ``eta``, ``time_limit``,
                ``soft_time_limit``, ``retry``, ``retry_policy``.

        Raises:
            Unroutable: no queue took the message.
            PublishNotConfirmed: the broker nacked it or did not confirm in time.
            BrokerUnreachable, AuthenticationFailed, ConnectionLost: connection problems.
            ConfigError: a bad option value.
        """
        return self.app._send(self._options(args, kwargs, options))

    async def aapply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Unpack[PublishOptions],
    ) -> AsyncResult:
        """Async :meth:`apply_async` (aio-pika); same arguments and errors."""
        return await self.app._asend(self._options(args, kwargs, options))

    def delay_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """:meth:`delay` once the current Django transaction commits (nothing on rollback).

        Outside a transaction the task is sent at once. As Celery's, it returns
        None: there is no call until the commit. A process that dies between the
        commit and the publish loses the call; the outbox does not (docs/django.md).
        """
        self.apply_async_on_commit(args, kwargs)

    def apply_async_on_commit(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        using: str | None = None,
        **options: Unpack[PublishOptions],
    ) -> None:
        """:meth:`apply_async` through Django's ``transaction.on_commit`` (database ``using``)."""
        from django.db import transaction

        self._options(args, kwargs, options)  # a bad option fails now, not after the commit
        transaction.on_commit(lambda: self.apply_async(args, kwargs, **options), using=using)

    # -- workflows (amqptasks.canvas) --------------------------------------------------------

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature of this task (see :doc:`workflows`): ``add.s(2) | mul.s(10)``."""
        from amqptasks.canvas import Signature

        return Signature(self, args, kwargs, app=self.app)  # type: ignore[arg-type]

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: in a chain, it ignores the step before's result."""
        from amqptasks.canvas import Signature

        return Signature(self, args, kwargs, immutable=True, app=self.app)  # type: ignore[arg-type]

    def signature(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Signature:
        """A signature with call options: ``add.signature((2, 2), countdown=10)``."""
        from amqptasks.canvas import Signature

        return Signature(self, args, kwargs, options, app=self.app)  # type: ignore[arg-type]

    def map(self, items: Iterable[Any]) -> Signature:
        """A group calling this task once per item (one message each)."""
        from amqptasks.canvas.group import map_signatures

        return map_signatures(self, items, star=False)

    def starmap(self, items: Iterable[Sequence[Any]]) -> Signature:
        """A group calling this task with each item's elements as arguments."""
        from amqptasks.canvas.group import map_signatures

        return map_signatures(self, items, star=True)

    def chunks(self, items: Iterable[Sequence[Any]], n: int) -> Signature:
        """A group of ``celery.starmap`` calls, each running this task on ``n`` items."""
        from amqptasks.canvas.group import chunk_signatures

        return chunk_signatures(self, items, n)


#: Options of ``@app.task`` that go to the task's :class:`RetryPolicy`.
RETRY_OPTIONS = (
    "max_retries",
    "autoretry_for",
    "dont_autoretry_for",
    "retry_backoff",
    "retry_backoff_max",
    "retry_jitter",
    "default_retry_delay",
    "dead_letter_failures",
)
TASK_OPTIONS = (
    "name",
    "queue",
    "ignore_result",
    "serializer",
    "compression",
    "acks_early",
    "bind",
    "priority",
    "time_limit",
    "soft_time_limit",
    "rate_limit",
    "base",
    *RETRY_OPTIONS,
)


def check_task_options(options: Mapping[str, Any], accept_content: tuple[str, ...]) -> None:
    """Fail at decoration time on an unknown option or an unusable serializer."""
    unknown = sorted(set(options) - set(TASK_OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown task option(s) {', '.join(unknown)}; known: {', '.join(sorted(TASK_OPTIONS))}"
        )
    serializer = options.get("serializer")
    if serializer:
        check_accepted(serializer, accept_content)
    check_priority(options.get("priority"))
    base = options.get("base")
    if base is not None and not (isinstance(base, type) and issubclass(base, Task)):
        raise ConfigError(f"base must be a subclass of amqptasks.Task, got {base!r}")
    compression = options.get("compression")
    if compression:
        codec(compression)
    check_time_limits(options.get("soft_time_limit"), options.get("time_limit"), "@app.task")
    parse_rate_limit(options.get("rate_limit"))


def split_retry_options(
    options: Mapping[str, Any],
    defaults: Mapping[str, Any],
) -> tuple[dict[str, Any], RetryPolicy]:
    """Task options without the retry ones, and the :class:`RetryPolicy` they make.

    ``defaults`` are the app's (``task_max_retries`` and friends).
    """
    rest = {k: v for k, v in options.items() if k not in RETRY_OPTIONS}
    values = {**defaults, **{k: v for k, v in options.items() if k in RETRY_OPTIONS}}
    for key in ("autoretry_for", "dont_autoretry_for"):
        value = values.get(key)
        if isinstance(value, type):
            values[key] = (value,)
        elif isinstance(value, list):
            values[key] = tuple(value)
    return rest, RetryPolicy(**values)
