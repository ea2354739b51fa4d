"""What sending a workflow means, as data: the messages to publish, in order (no I/O).

A workflow is planned into :class:`Action` s: :class:`OpenChord` (make the
broker-held join of a chord before its members run) and :class:`Call` (one task
message). The client's sync and async shells and the worker's continuation all
carry out the same plans, so a chain step sent by a worker is exactly the
message a client would have sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amqptasks.canvas import joins
from amqptasks.results.result import AsyncResult

if TYPE_CHECKING:
    from collections.abc import Mapping

    from amqptasks.canvas._typing import CanvasApp
    from amqptasks.results.store import ResultStore

#: Signature options that are :func:`~amqptasks.publishing.prepare_call` arguments as they are.
PASSED_OPTIONS = frozenset(
    {
        "task_id",
        "queue",
        "exchange",
        "routing_key",
        "priority",
        "headers",
        "serializer",
        "compression",
        "ignore_result",
        "countdown",
        "time_limit",
        "soft_time_limit",
        "link",
        "link_error",
        "group_id",
        "group_index",
        "root_id",
        "parent_id",
    }
)
#: Messages of one plan an async client has in flight at once (confirms pipelined).
ASYNC_WINDOW = 256
#: Options only a client's publish understands (its publish retries).
CLIENT_OPTIONS = frozenset({"retry", "retry_policy"})


@dataclass(frozen=True)
class PlanContext:
    """Who plans: the app, where frozen calls report, and the calling task's ids."""

    app: CanvasApp
    #: Reply queue for the results of the calls frozen now (None: leave them as set).
    reply_to: str | None = None
    #: Where result handles read from (None: no handles are needed, on a worker).
    store: ResultStore | None = None
    root_id: str | None = None
    parent_id: str | None = None

    def result(self, task_id: str, name: str) -> AsyncResult:
        """The handle of task ``task_id``."""
        return AsyncResult(task_id, store=self.store, task_name=name)


@dataclass(frozen=True)
class Call:
    """One task message: name, arguments, :func:`prepare_call` options, reply queue."""

    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    reply_to: str | None = None


@dataclass(frozen=True)
class OpenChord:
    """Make chord ``chord_id``'s join on the broker (before any member is sent)."""

    chord_id: str


Action = Call | OpenChord


def _when(value: Any) -> Any:
    if isinstance(value, str):  # a datetime that travelled as JSON
        return dt.datetime.fromisoformat(value)
    return value


def call_options(
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    options: Mapping[str, Any],
    ctx: PlanContext,
) -> Call:
    """The :class:`Call` for a signature's options, Celery's names included.

    Options that do not concern the message (Celery's ``stamped_headers``, say)
    are left out; ``chain`` and ``chord`` go into the embed.
    """
    chosen: dict[str, Any] = {
        key: value
        for key, value in options.items()
        if value is not None and (key in PASSED_OPTIONS or key in CLIENT_OPTIONS)
    }
    if options.get("eta") is not None:
        chosen["eta"] = _when(options["eta"])
    if options.get("expires") is not None:
        chosen["expires"] = _when(options["expires"])
    embed = {key: options[key] for key in ("chain", "chord") if options.get(key)}
    if embed:
        chosen["embed"] = embed
    if ctx.root_id and "root_id" not in chosen:
        chosen["root_id"] = ctx.root_id
    if ctx.parent_id and "parent_id" not in chosen:
        chosen["parent_id"] = ctx.parent_id
    return Call(name, list(args), dict(kwargs), chosen, options.get("reply_to"))


def execute_sync(app: CanvasApp, actions: list[Action]) -> None:
    """Carry out a plan from a sync client: joins first, then the messages, pipelined."""
    for action in actions:
        if isinstance(action, OpenChord):
            joins.open_chord_sync(app.settings, action.chord_id)
    calls = [action for action in actions if isinstance(action, Call)]
    if len(calls) == 1:
        app._send(_client_call(app, calls[0]))
        return
    with app.batch():
        for call in calls:
            app._send(_client_call(app, call))


async def execute_async(app: CanvasApp, actions: list[Action]) -> None:
    """Carry out a plan from an async client."""
    for action in actions:
        if isinstance(action, OpenChord):
            await joins.open_chord_async(app.settings, action.chord_id)
    calls = [action for action in actions if isinstance(action, Call)]
    for start in range(0, len(calls), ASYNC_WINDOW):
        window = calls[start : start + ASYNC_WINDOW]
        await asyncio.gather(*(app._asend(_client_call(app, call)) for call in window))


def _client_call(app: CanvasApp, call: Call) -> dict[str, Any]:
    # The client's own reply queue is the reply_to (the one frozen calls were given).
    return app._named_call(call.name, call.args, call.kwargs, dict(call.options))
