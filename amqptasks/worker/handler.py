"""What the worker does with one delivery: the pipeline that runs the extensions.

decode -> find the task -> run within its limits -> settle, with the worker's
extensions (:mod:`amqptasks.worker.extension`) consulted at each point: the
worker's own rules (:mod:`amqptasks.worker.rules`: delivery cap, expiry and ETA,
rate limits, retries, signals, result replies) first, then the user's. Whatever
goes wrong, every delivery ends settled exactly once: run, retried or
dead-lettered with a reason (never left unacked, never requeued in a loop),
publishing (with confirm) before acking, so a crash in between duplicates a
message rather than losing it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from amqptasks import constants
from amqptasks.exceptions import BrokerError, ConfigError, DecodeError, WorkerLost
from amqptasks.logging import get_logger
from amqptasks.protocol.envelope import TaskMessage, parse_task_message
from amqptasks.results import states
from amqptasks.worker.acks import AckBatcher
from amqptasks.worker.decisions import (
    DeadLetter,
    Decision,
    Defer,
    Finish,
    Requeue,
    RetryLater,
    Skip,
)
from amqptasks.worker.execution import execute, make_request
from amqptasks.worker.extension import HOOKS, overrides
from amqptasks.worker.outcome import Outcome
from amqptasks.worker.pools.base import NotStarted
from amqptasks.worker.slots import Slots
from amqptasks.worker.state import MessageState
from amqptasks.policies.limits import resolve_time_limits

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from amqptasks.app import App
    from amqptasks.transport.consumer import Delivery
    from amqptasks.worker.extension import Extension
    from amqptasks.worker.options import WorkerOptions
    from amqptasks.worker.pools.base import ExecutionPool
    from amqptasks.worker.sender import Sender

log = get_logger(__name__)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class DeliveryHandler:
    """Runs each delivery through the extensions and settles it (see the module docstring).

    Args:
        app: The app whose tasks run.
        options: The worker's resolved options.
        sender: Publishes replies, copies and dead letters.
        pool: Where plain-function tasks run.
        extensions: The worker's rules then the user's, in order.
    """

    def __init__(
        self,
        app: App,
        options: WorkerOptions,
        *,
        sender: Sender,
        pool: ExecutionPool,
        extensions: Sequence[Extension],
    ) -> None:
        self.app = app
        self.options = options
        self.sender = sender
        self.pool = pool
        self.extensions = list(extensions)
        self.slots = Slots(options.concurrency)
        #: Plain-function calls go straight to the pool, which queues those its
        #: threads cannot start yet (bounded by the prefetch), rather than wait
        #: for a slot here. Not when the app has ``async def`` tasks: their slots
        #: are what keeps all tasks together within the concurrency.
        self.queue_ahead = pool.queues_ahead and not any(
            app.tasks.get(name).is_async for name in app.tasks
        )
        #: Every settlement goes through here: acks batched per channel, and held
        #: back a little while work waits to start.
        self.acks = AckBatcher(hold_while=self._work_waiting, hold_limit=options.ack_hold_limit)
        self.slots.on_uncontended = self.acks.stop_holding
        self.stopping = asyncio.Event()
        self.running = 0
        # Only the hooks an extension overrides are called (see Extension).
        hooks = {name: [ext for ext in self.extensions if overrides(ext, name)] for name in HOOKS}
        self._received = [ext.on_received for ext in hooks["on_received"]]
        self._decoded = [ext.on_decoded for ext in hooks["on_decoded"]]
        self._before_run = [ext.before_run for ext in hooks["before_run"]]
        self._starters = hooks["on_start"]
        self._after_run = [ext.after_run for ext in reversed(hooks["after_run"])]
        self._on_failure = [ext.on_failure for ext in hooks["on_failure"]]
        self._on_retry = [ext.on_retry for ext in hooks["on_retry"]]
        self._on_dead_letter = [ext.on_dead_letter for ext in hooks["on_dead_letter"]]
        self._before_settle = [ext.before_settle for ext in hooks["before_settle"]]

    def _work_waiting(self) -> bool:
        """Deliveries wait for a slot, or calls in the pool's queue for a thread."""
        return self.slots.contended() or self.pool.queued > 0

    async def handle(self, delivery: Delivery, queue: str) -> None:
        """Process one delivery from ``queue``; settles it exactly once."""
        state = MessageState(delivery, queue, self.acks.delivered(delivery))
        try:
            decision = await self._decide(state)
        except Exception as exc:  # an extension's bug, say: keep the message, say why
            log.error(
                "could not handle a delivery; dead-lettering it",
                task_id=state.task_id,
                queue=queue,
                error=_describe(exc),
            )
            decision = DeadLetter(constants.REASON_WORKER_ERROR, exc)
        await self._settle(state, decision)

    # -- deciding ------------------------------------------------------------------------------

    async def _decide(self, state: MessageState) -> Decision:
        for hook in self._received:
            decided = await hook(state)
            if decided is not None:
                return decided
        try:
            message = self._decode(state.delivery)
        except DecodeError as exc:
            return DeadLetter(getattr(exc, "reason", constants.REASON_DECODE_ERROR), exc)
        except Exception as exc:  # a header of an unexpected type, say
            return DeadLetter(constants.REASON_BAD_MESSAGE, exc)
        state.message = message
        task = self.app.tasks.find(message.task)
        if task is None:
            # A caller waiting on the result (Celery replies NotRegistered) learns why.
            return DeadLetter(constants.REASON_UNKNOWN_TASK, self.app.tasks.unknown(message.task))
        state.task = task
        for hook in self._decoded:
            decided = await hook(state)
            if decided is not None:
                return decided
        state.acks_early = (
            task.acks_early if task.acks_early is not None else self.app.settings.task_acks_early
        )
        limits = self.options.time_limits
        state.limits = resolve_time_limits(
            message.timelimit, (task.soft_time_limit, task.time_limit), (limits.soft, limits.hard)
        )
        for hook in self._before_run:
            decided = await hook(state)
            if decided is not None:
                return decided
        if self.queue_ahead and not task.is_async:
            # No slot to wait for: the pool queues what its threads cannot start yet.
            outcome = await self._run(state)
        else:
            async with self.slots:
                outcome = await self._run(state)
        if outcome is None or isinstance(outcome.exception, NotStarted):
            return Requeue()  # the worker stops: back to the queue, unstarted
        state.outcome = outcome
        decided = await self._after(state)
        if decided is not None:
            return decided
        if isinstance(outcome.exception, WorkerLost) and not state.acks_early:
            # Not run to the end: back to the queue, where it counts as a delivery
            # (rules.deliveries), so a task that kills its process ends in the DLQ.
            log.error(
                "task's pool process died; the message goes back to the queue",
                task_id=message.id,
                task=message.task,
                error=str(outcome.exception),
            )
            return Requeue()
        if outcome.exception is None:
            log.debug("task succeeded", task_id=message.id, task=message.task)
            return Finish(report=outcome)
        for hook in self._on_failure:
            decided = await hook(state)
            if decided is not None:
                return decided
        return DeadLetter(
            constants.REASON_FAILED,
            outcome.exception,
            outcome.traceback,
            report=Outcome(
                states.FAILURE, exception=outcome.exception, traceback=outcome.traceback
            ),
        )

    def _decode(self, delivery: Delivery) -> TaskMessage:
        return parse_task_message(
            delivery.body,
            headers=delivery.headers,
            content_type=delivery.content_type,
            accept_content=self.app.settings.accept_content,
            reply_to=delivery.reply_to,
            correlation_id=delivery.correlation_id,
        )

    async def _run(self, state: MessageState) -> Outcome | None:
        """Run the call (its slot held, if it needs one); None if it was not started."""
        if self.stopping.is_set():
            return None
        message, task, limits = state.message, state.task, state.limits
        assert message is not None and task is not None and limits is not None
        if state.acks_early:  # at-most-once: acked before it starts, never redelivered
            await state.settlement.ack(written=True)
        self.running += 1
        try:
            state.request = make_request(
                message,
                hostname=self.options.hostname,
                queue=state.queue,
                redelivered=bool(state.delivery.redelivered),
            )
            return await execute(task, state.request, self.pool, limits, self._on_start(state))
        finally:
            self.running -= 1

    def _on_start(self, state: MessageState) -> Callable[[], None] | None:
        """What runs on the loop as the call starts; None when no extension wants it
        (the common case then costs the pool no round trip to the loop)."""
        starters = [ext for ext in self._starters if ext.wants_start(state)]
        if not starters:
            return None

        def on_start() -> None:
            for ext in starters:
                try:
                    ext.on_start(state)
                except Exception as exc:
                    _hook_failed(ext.on_start, state, exc)

        return on_start

    async def _after(self, state: MessageState) -> Decision | None:
        for hook in self._after_run:
            try:
                decided = await hook(state)
            except Exception as exc:
                _hook_failed(hook, state, exc)
                continue
            if decided is not None:
                return decided
        return None

    # -- settling ------------------------------------------------------------------------------

    async def _settle(self, state: MessageState, decision: Decision) -> None:
        await self._notify(self._before_settle, state, decision)
        try:
            await self._carry_out(state, decision)
        except Exception as exc:
            await self._could_not_carry_out(state, decision, exc)

    async def _carry_out(self, state: MessageState, decision: Decision) -> None:
        settlement = state.settlement
        if isinstance(decision, Finish | Skip):
            await settlement.ack()
        elif isinstance(decision, Requeue):
            await settlement.requeue()
        elif isinstance(decision, RetryLater):
            await self._notify(self._on_retry, state, decision)
            retries = state.message.retries + 1 if state.message is not None else None
            await self.sender.republish(state.delivery, state.queue, decision.countdown, retries)
            await settlement.ack()
        elif isinstance(decision, Defer):
            await self.sender.republish(
                state.delivery, state.queue, decision.countdown, None, decision.headers
            )
            await settlement.ack()
        elif isinstance(decision, DeadLetter):
            await self._dead_letter(state, decision)
        else:
            raise TypeError(f"not a worker decision: {decision!r}")

    async def _could_not_carry_out(
        self, state: MessageState, decision: Decision, exc: Exception
    ) -> None:
        """A copy could not be published: requeue once if the broker failed, else dead-letter.

        A message that was delivered before is not requeued again (no loop): it
        goes to its dead-letter queue saying why.
        """
        if isinstance(exc, BrokerError) and not state.delivery.redelivered:
            log.error(
                "could not settle a task; it will be delivered again",
                task_id=state.task_id,
                error=_describe(exc),
            )
            await state.settlement.requeue()
            return
        if isinstance(decision, DeadLetter):  # _dead_letter fell back already
            return
        # A countdown or ETA the delay levels cannot hold, or a copy that cannot be made.
        reason = (
            constants.REASON_BAD_ETA
            if isinstance(exc, ConfigError)
            else constants.REASON_WORKER_ERROR
        )
        await self._settle(state, DeadLetter(reason, exc))

    async def _dead_letter(self, state: MessageState, decision: DeadLetter) -> None:
        """Copy the delivery to its queue's DLQ with why, then ack; else reject it to the DLX."""
        delivery, queue = state.delivery, state.queue
        dlq = self.sender.dead_letter_queue(queue)
        log.error(
            "message dead-lettered",
            queue=queue,
            dead_letter_queue=dlq,
            reason=decision.reason,
            error=str(decision.error),
            message_id=state.task_id,
        )
        await self._notify(self._on_dead_letter, state, decision)
        if dlq is None:
            await state.settlement.reject()  # the queue has no DLQ: the operator chose to drop
            return
        try:
            await self.sender.dead_letter(delivery, queue, decision)
        except Exception as exc:
            # Fall back on the queue's own dead-letter exchange (no reason headers).
            log.error(
                "dead-letter publish failed; rejecting to the queue's DLX", error=_describe(exc)
            )
            await state.settlement.reject()
            return
        await state.settlement.ack()

    async def _notify(self, hooks: list[Any], state: MessageState, decision: Decision) -> None:
        for hook in hooks:
            try:
                await hook(state, decision)
            except Exception as exc:
                _hook_failed(hook, state, exc)


def _hook_failed(hook: Any, state: MessageState, exc: Exception) -> None:
    """A notification hook raised: logged in one line; the delivery goes on."""
    log.error(
        "worker extension failed",
        hook=getattr(hook, "__qualname__", repr(hook)),
        task_id=state.task_id,
        error=_describe(exc),
    )
