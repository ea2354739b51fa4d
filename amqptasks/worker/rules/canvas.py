"""Workflows carried on by the worker: chain steps, callbacks, errbacks and chord joins.

After a call's final outcome is decided and before its delivery is acked
(``before_settle``), what its message's embed asks for is published, confirmed:

- success: its ``callbacks`` (``link``) and the next ``chain`` step, each with the
  result as first argument (unless immutable); a chord member leaves its part in
  its chord's results queue and, if that completes the chord, sends the body
  (:mod:`amqptasks.canvas.joins`);
- final failure (dead-lettered, or a FAILURE the task's policy keeps, or an
  expired call): its ``errbacks`` with its task id, FAILURE for every chain step
  after it, and a failed part for its chord (the chord's errbacks then run, not
  its body).

A retry publishes nothing: the next attempt decides. If the broker fails half-way
the delivery goes back to its queue, so the call runs again and the workflow goes
on from there (a chord member that ran twice counts once). A chord sent by Celery
(no broker-held join) is dead-lettered whole as ``unsupported-workflow``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from amqptasks import constants
from amqptasks.canvas import joins
from amqptasks.canvas.builtins import register_builtins
from amqptasks.canvas.chord import JOIN_OPTION
from amqptasks.canvas.plan import CLIENT_OPTIONS, Call, OpenChord, PlanContext
from amqptasks.canvas.signature import from_dict
from amqptasks.exceptions import ChordError, TaskError, Unroutable
from amqptasks.logging import get_logger
from amqptasks.protocol import serializers
from amqptasks.publishing import prepare_call
from amqptasks.results import states
from amqptasks.results.meta import encode_result, rebuild_exception
from amqptasks.transport import aio
from amqptasks.worker.decisions import CannotSettle, DeadLetter, Finish, Skip
from amqptasks.worker.extension import Extension, describe
from amqptasks.worker.outcome import Outcome
from amqptasks.worker.outgoing import ReplyTarget

if TYPE_CHECKING:
    from collections.abc import Awaitable

    import aio_pika

    from amqptasks.canvas.plan import Action
    from amqptasks.protocol.envelope import TaskMessage
    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.extension import WorkerContext
    from amqptasks.worker.state import MessageState

log = get_logger(__name__)


def _carries_workflow(message: TaskMessage) -> bool:
    embed = message.embed
    if not embed:
        return False
    if type(embed) is dict:  # the common case: no generator
        return any(embed.values())
    return isinstance(embed, Mapping) and any(embed.get(key) for key in embed)


class Workflows(Extension):
    """Carries chains, callbacks, errbacks and chords on (see the module docstring)."""

    def __init__(self) -> None:
        self._worker: WorkerContext | None = None
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._lock = asyncio.Lock()

    async def on_worker_start(self, worker: WorkerContext) -> None:
        self._worker = worker
        register_builtins(worker.app)

    async def on_worker_stop(self, worker: WorkerContext) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            await connection.close()

    def on_decoded(self, state: MessageState) -> Decision | None:
        message = state.message
        assert message is not None
        embed = message.embed
        if not embed:
            return None
        if not isinstance(embed, Mapping):
            return _refuse(message, f"an embed of type {type(embed).__name__}")
        body = embed.get("chord")
        if body and not (
            isinstance(body, Mapping) and (body.get("options") or {}).get(JOIN_OPTION)
        ):
            # Celery's chords join in its result store, which we do not have.
            return _refuse(message, "a chord made by Celery (joined in a result store)")
        return None

    def before_settle(self, state: MessageState, decision: Decision) -> Awaitable[None] | None:
        message = state.message
        if message is None or not _carries_workflow(message):
            return None
        return self._carry_on(message, decision)

    async def _carry_on(self, message: TaskMessage, decision: Decision) -> None:
        report = decision.report
        try:
            if (
                isinstance(decision, Finish)
                and report is not None
                and report.status == states.SUCCESS
            ):
                await self._succeeded(message, report.value)
            elif _final_failure(decision):
                error = _failure_of(decision)
                await self._failed(message, error, report.traceback if report else None)
        except Exception as exc:
            log.error(
                "could not carry the workflow on; the call is not acked",
                task_id=message.id,
                task=message.task,
                error=describe(exc),
            )
            raise CannotSettle(exc) from exc

    # -- success -------------------------------------------------------------------------------

    async def _succeeded(self, message: TaskMessage, value: Any) -> None:
        embed = message.embed
        ctx = self._context(message)
        actions: list[Action] = []
        for callback in embed.get("callbacks") or []:
            actions.extend(from_dict(callback, app=ctx.app).plan([value], None, {}, ctx)[0])
        rest = list(embed.get("chain") or [])
        if rest:
            step = rest.pop()
            extra = {"chain": rest} if rest else {}
            actions.extend(from_dict(step, app=ctx.app).plan([value], None, extra, ctx)[0])
        await self._execute(actions)
        body = embed.get("chord")
        if body:
            await self._leave_part(message, body, Outcome.success(value))

    # -- failure -------------------------------------------------------------------------------

    async def _failed(self, message: TaskMessage, error: BaseException, tb: str | None) -> None:
        embed = message.embed
        ctx = self._context(message)
        actions: list[Action] = []
        for errback in embed.get("errbacks") or []:
            actions.extend(from_dict(errback, app=ctx.app).plan([message.id], None, {}, ctx)[0])
        await self._execute(actions)
        await self._fail_downstream(list(embed.get("chain") or []), error, message)
        body = embed.get("chord")
        if body:
            await self._leave_part(
                message, body, Outcome(states.FAILURE, exception=error, traceback=tb)
            )

    async def _fail_downstream(
        self, signatures: list[Any], error: BaseException, cause: TaskMessage
    ) -> None:
        """Tell whoever waits on the calls that will now never run that they failed."""
        for sig in _downstream(signatures):
            options = sig.get("options") or {}
            task_id, reply_to = options.get("task_id"), options.get("reply_to")
            if task_id and reply_to:
                target = ReplyTarget(
                    str(task_id), str(sig.get("task")), str(reply_to), str(task_id)
                )
                await self._sender().reply(target, Outcome(states.FAILURE, exception=error))
            body = options.get("chord")
            if body and task_id is not None and options.get("group_index") is not None:
                await self._leave_part(
                    cause,
                    body,
                    Outcome(states.FAILURE, exception=error),
                    index=int(options["group_index"]),
                    task_id=str(task_id),
                )

    # -- chords --------------------------------------------------------------------------------

    async def _leave_part(
        self,
        message: TaskMessage,
        body: Mapping[str, Any],
        outcome: Outcome,
        *,
        index: int | None = None,
        task_id: str | None = None,
    ) -> None:
        chord_id = str((body.get("options") or {}).get(JOIN_OPTION))
        size = int(body.get("chord_size") or 0)
        if index is None:
            index = int(message.headers.get("group_index") or 0)
        member = task_id or message.id
        serializer = self._sender().result_serializer
        encoded = serializer.serializer.dumps(
            encode_result(
                member,
                outcome.status,
                outcome.value,
                traceback=outcome.traceback,
                exception=outcome.exception,
            )
        )
        part = joins.part_message(
            chord_id, index, encoded, serializer.content_type, serializer.content_encoding, member
        )
        try:
            await self._sender().publish(part)
        except Unroutable:
            log.info("chord already ended (its queues are gone)", chord=chord_id, task_id=member)
            return
        await self._join(chord_id, size, body, message)

    async def _join(
        self, chord_id: str, size: int, body: Mapping[str, Any], message: TaskMessage
    ) -> None:
        connection = await self._join_connection()
        claim = await joins.claim(connection, chord_id, size, self._decode)
        if claim is None:
            return
        try:
            if not claim.done:
                failed = [part for part in claim.parts if part.meta.status != states.SUCCESS]
                if failed:
                    await self._chord_failed(body, failed[0], message)
                else:
                    values = [part.meta.result for part in claim.parts]
                    ctx = self._context(message)
                    actions, _ = from_dict(body, app=ctx.app).plan([values], None, {}, ctx)
                    await self._execute(actions, mark=claim.results_queue)
                    log.debug("chord joined", chord=chord_id, size=size)
            await claim.finish()
        finally:
            await claim.close()

    async def _chord_failed(
        self, body: Mapping[str, Any], part: joins.Part, message: TaskMessage
    ) -> None:
        meta = part.meta
        cause = rebuild_exception(meta.result, meta.traceback)
        error = ChordError(f"Dependency {meta.task_id} raised {type(cause).__name__}: {cause}")
        ctx = self._context(message)
        actions: list[Action] = []
        errbacks = (body.get("options") or {}).get("link_error") or []
        for errback in [errbacks] if isinstance(errbacks, Mapping) else errbacks:
            actions.extend(from_dict(errback, app=ctx.app).plan([meta.task_id], None, {}, ctx)[0])
        await self._execute(actions)
        await self._fail_downstream([body], error, message)

    # -- publishing ----------------------------------------------------------------------------

    async def _execute(self, actions: list[Action], *, mark: str | None = None) -> None:
        """Publish a plan from the worker (confirmed); ``mark``: BCC the first call there."""
        worker = self._need_worker()
        app = worker.app
        for action in actions:
            if isinstance(action, OpenChord):
                await joins.open_chord_on(
                    await self._join_connection(), worker.sender.publish, action.chord_id
                )
        calls = []
        for position, action in enumerate(a for a in actions if isinstance(a, Call)):
            options = {k: v for k, v in action.options.items() if k not in CLIENT_OPTIONS}
            named = app._named_call(action.name, action.args, action.kwargs, options)
            if mark is not None and position == 0:
                named["headers"] = {**(named.get("headers") or {}), "BCC": [mark]}
            call = prepare_call(
                settings=app.settings, router=app.router, reply_to=action.reply_to, **named
            )
            if mark is not None and position == 0 and call.route.exchange and call.route.queue:
                # BCC routes through the same exchange: go straight to the queue, so
                # the copy reaches the chord's results queue through the default one.
                message = dataclasses.replace(
                    call.message, exchange="", routing_key=call.route.queue.name
                )
                call = dataclasses.replace(call, message=message)
            # The caller's reply queue gets the results, not this worker's.
            calls.append(dataclasses.replace(call, wants_result=False))
        if calls:
            await asyncio.gather(*(worker.sender.call_client.publish(call) for call in calls))

    # -- helpers -------------------------------------------------------------------------------

    def _need_worker(self) -> WorkerContext:
        assert self._worker is not None, "Workflows used before on_worker_start"
        return self._worker

    def _sender(self) -> Any:
        return self._need_worker().sender

    def _context(self, message: TaskMessage) -> PlanContext:
        return PlanContext(
            self._need_worker().app,
            root_id=message.root_id or message.id,
            parent_id=message.id,
        )

    def _decode(self, body: bytes, content_type: str | None) -> Any:
        info = serializers.decoder_for(
            content_type, self._need_worker().app.settings.accept_content
        )
        return info.serializer.loads(body)

    async def _join_connection(self) -> aio_pika.abc.AbstractRobustConnection:
        if self._connection is None or self._connection.is_closed:
            async with self._lock:
                if self._connection is None or self._connection.is_closed:
                    worker = self._need_worker()
                    self._connection = await aio.connect(
                        worker.app.settings.broker, f"{worker.hostname} chords", log_outages=False
                    )
        return self._connection


def _refuse(message: TaskMessage, what: str) -> DeadLetter:
    return DeadLetter(
        constants.REASON_UNSUPPORTED,
        TaskError(
            f"task {message.task} ({message.id}) carries {what}, which amqptasks does not run"
        ),
    )


def _final_failure(decision: Decision) -> bool:
    report = decision.report
    if isinstance(decision, DeadLetter):
        return report is None or report.status == states.FAILURE
    if isinstance(decision, Finish):
        return report is not None and report.status == states.FAILURE
    if isinstance(decision, Skip):  # expired or revoked: it will never run
        return report is not None and report.status == states.REVOKED
    return False


def _failure_of(decision: Decision) -> BaseException:
    report = decision.report
    if report is not None and report.exception is not None:
        return report.exception
    if isinstance(decision, DeadLetter):
        return decision.error
    return TaskError(f"the call ended {report.status if report else 'unrun'}")


def _downstream(signatures: list[Any]) -> list[Mapping[str, Any]]:
    """Every single call that would have run after ``signatures`` (chains and chord bodies)."""
    found: list[Mapping[str, Any]] = []
    pending = list(signatures)
    while pending:
        sig = pending.pop()
        if not isinstance(sig, Mapping):
            continue
        kind = sig.get("subtask_type")
        kwargs = sig.get("kwargs") or {}
        if kind == "chain":
            pending.extend(reversed(kwargs.get("tasks") or []))
        elif kind == "chord":
            if kwargs.get("body"):
                pending.append(kwargs["body"])
        elif kind == "group":
            pending.extend(kwargs.get("tasks") or [])
        else:
            found.append(sig)
        pending.extend((sig.get("options") or {}).get("chain") or [])
    return found
