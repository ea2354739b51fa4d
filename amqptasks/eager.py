"""Eager mode: run a call in this process the way a worker would, with no broker.

With ``task_always_eager`` (Celery's setting), ``delay()``/``apply_async()`` of a
task registered in the app do not publish. The call is encoded into the message a
worker would receive (the real serializer and compression: arguments it cannot
encode are refused with the same ``TypeError``), decoded again, run with
``self.request`` set, retried as its retry policy says (at once: countdowns and
ETAs are not waited for), and its result goes through the result serializer
before the returned :class:`~amqptasks.AsyncResult` holds it.

What a worker would dead-letter ends FAILURE here (there is no dead-letter
queue). Workflows (``link``, chains, groups, chords) are refused: they need
the broker. ``app.send_task()`` with a name no task is registered under is
published as usual, as in Celery.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import traceback as tb
from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import ConfigError, ResultTimeout
from amqptasks.logging import get_logger
from amqptasks.protocol import serializers
from amqptasks.protocol.envelope import parse_task_message
from amqptasks.publishing import prepare_call
from amqptasks.request import Request, current_request
from amqptasks.results import states
from amqptasks.results.meta import ResultMeta, decode_result, encode_result
from amqptasks.results.result import AsyncResult
from amqptasks.results.store import ResultStore

if TYPE_CHECKING:
    from collections.abc import Mapping

    from amqptasks.config import Settings
    from amqptasks.protocol.envelope import TaskMessage
    from amqptasks.registry import TaskRegistry
    from amqptasks.routing import Router
    from amqptasks.task import Task

log = get_logger(__name__)

#: Call options that make a workflow, which eager mode cannot run.
_WORKFLOW_OPTIONS = ("link", "link_error", "embed", "group_id", "group_index")
#: Options of the publisher only (its retries after a connection loss).
_PUBLISHER_OPTIONS = ("retry", "retry_policy")
#: The hostname a task sees in ``self.request`` when it runs eagerly.
EAGER_HOSTNAME = "eager"


class EagerStore(ResultStore):
    """The results of eager calls, by task id (always ready once the call returned)."""

    def __init__(self) -> None:
        self._metas: dict[str, ResultMeta] = {}

    def put(self, meta: ResultMeta) -> None:
        """Record how a call ended."""
        self._metas[meta.task_id] = meta

    def peek(self, task_id: str) -> ResultMeta | None:
        """The state of ``task_id``, if an eager call recorded one."""
        return self._metas.get(task_id)

    def get(self, task_id: str, timeout: float | None) -> ResultMeta:
        """The state of ``task_id``; an eager call is over when ``delay()`` returns.

        Raises:
            ResultTimeout: no eager call of that id ran in this process.
        """
        meta = self._metas.get(task_id)
        if meta is None or meta.status not in states.READY_STATES:
            raise ResultTimeout(f"task {task_id} did not run eagerly in this process")
        return meta

    async def aget(self, task_id: str, timeout: float | None) -> ResultMeta:
        """As :meth:`get` (nothing to wait for)."""
        return self.get(task_id, timeout)


def is_eager(settings: Settings, tasks: TaskRegistry, options: Mapping[str, Any]) -> bool:
    """True when ``task_always_eager`` is on and the call names a registered task."""
    return settings.task_always_eager and str(options.get("task_name")) in tasks


def apply(
    settings: Settings,
    router: Router,
    tasks: TaskRegistry,
    store: EagerStore,
    options: dict[str, Any],
) -> AsyncResult:
    """Run the call ``options`` (as ``App._send`` gets it) in this process.

    Raises:
        TypeError: arguments the task serializer cannot encode (as when publishing).
        ConfigError: a bad option, or a workflow option.
        BaseException: the task's own exception, with ``task_eager_propagates``.
    """
    workflow = [name for name in _WORKFLOW_OPTIONS if options.get(name)]
    if workflow:
        raise ConfigError(
            f"eager mode (task_always_eager) cannot run workflows ({', '.join(workflow)}): "
            f"they need a broker; test them against a real node (amqptasks.testing.RabbitNode)"
        )
    for name in _PUBLISHER_OPTIONS:
        options.pop(name, None)
    task = tasks.get(str(options["task_name"]))
    retries = 0
    while True:
        call = prepare_call(
            settings=settings, router=router, reply_to=None, retries=retries, **options
        )
        options["task_id"] = call.message.message_id  # every attempt keeps the id
        message = parse_task_message(
            call.message.body,
            headers=call.message.headers,
            content_type=call.message.content_type,
            accept_content=settings.accept_content,
        )
        queue = call.route.queue.name if call.route.queue is not None else call.route.routing_key
        status, value, error, trace = _run(task, _request(message, queue))
        if error is None:
            break
        decision = task.failure_policy.decide(error, message.retries)
        if decision.action == "retry":
            log.info("eager task failed; retrying", task=task.name, retries=retries + 1)
            retries += 1
            continue
        error = decision.exception or error
        if settings.task_eager_propagates:
            raise error
        status, value = states.FAILURE, None
        break
    meta = _round_trip(settings.result_serializer, message.id, status, value, error, trace)
    store.put(meta)
    return AsyncResult(message.id, store=store, task_name=task.name)


def _request(message: TaskMessage, queue: str) -> Request:
    return Request(
        id=message.id,
        task=message.task,
        args=message.args,
        kwargs=dict(message.kwargs),
        retries=message.retries,
        root_id=message.root_id,
        parent_id=message.parent_id,
        group=message.group,
        correlation_id=message.correlation_id,
        eta=message.eta,
        expires=message.expires,
        origin=message.origin,
        hostname=EAGER_HOSTNAME,
        queue=queue,
        headers=dict(message.headers),
        is_eager=True,
    )


def _run(
    task: Task[Any, Any], request: Request
) -> tuple[str, Any, BaseException | None, str | None]:
    """Call the task with ``self.request`` set: (status, value, exception, traceback)."""
    token = current_request.set(request)
    try:
        value = task(*request.args, **request.kwargs)
        if inspect.isawaitable(value):
            value = _await(value)
    except Exception as exc:
        return states.FAILURE, None, exc, "".join(tb.format_exception(exc))
    finally:
        current_request.reset(token)
    return states.SUCCESS, value, None, None


def _await(awaitable: Any) -> Any:
    """Run an ``async def`` task's coroutine to its end, on a loop of its own."""

    async def wrapped() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wrapped())
    # Called from async code (a running loop): run it on a loop in another thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, wrapped()).result()


def _round_trip(
    serializer_name: str,
    task_id: str,
    status: str,
    value: Any,
    error: BaseException | None,
    trace: str | None,
) -> ResultMeta:
    """The result as a caller decodes it from a worker's reply (same serializer)."""
    info = serializers.by_name(serializer_name)
    try:
        body = info.serializer.dumps(
            encode_result(task_id, status, value, traceback=trace, exception=error)
        )
    except (TypeError, ValueError) as exc:
        # As a worker does: a result it cannot encode is a FAILURE saying so.
        body = info.serializer.dumps(
            encode_result(
                task_id,
                states.FAILURE,
                exception=TypeError(f"result cannot be serialized with {info.name}: {exc}"),
            )
        )
    meta = decode_result(info.serializer.loads(body))
    return meta
