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
import functools
import logging
from typing import TYPE_CHECKING

from amqptasks import constants
from amqptasks.exceptions import DecodeError, Terminated, WorkerLost
from amqptasks.logging import get_logger
from amqptasks.policies.limits import resolve_time_limits
from amqptasks.results import states
from amqptasks.worker.acks import AckBatcher
from amqptasks.worker.decisions import (
    DeadLetter,
    Decision,
    Finish,
    Requeue,
    Skip,
)
from amqptasks.worker.decode import decode_inline, decode_off_loop
from amqptasks.worker.execution import execute, make_request
from amqptasks.worker.extension import Hooks, consult, describe, hook_failed, resolved
from amqptasks.worker.outcome import Outcome
from amqptasks.worker.pools.base import NotStarted, StartHook
from amqptasks.worker.settle import Settler
from amqptasks.worker.slots import Slots
from amqptasks.worker.state import MessageState

if TYPE_CHECKING:
    from collections.abc import Sequence

    from amqptasks.app import App
    from amqptasks.transport.consumer import Delivery
    from amqptasks.worker.extension import Extension
    from amqptasks.worker.options import WorkerOptions
    from amqptasks.worker.pools.base import ExecutionPool
    from amqptasks.worker.sender import Sender

log = get_logger(__name__)
#: Asked before a per-task debug line: building a structlog event costs microseconds.
_debug_log = logging.getLogger(__name__)


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
        self.hooks = Hooks(self.extensions)
        self.settler = Settler(sender, self.hooks)

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
                error=describe(exc),
            )
            decision = DeadLetter(constants.REASON_WORKER_ERROR, exc)
        await self.settler.settle(state, decision)

    # -- deciding ------------------------------------------------------------------------------

    async def _decide(self, state: MessageState) -> Decision:
        decided = consult(self.hooks.on_received, state)
        if decided is not None and (decided := await resolved(decided)) is not None:
            return decided
        try:
            message = decode_inline(state.delivery, self.app.settings)
            if message is None:  # inflates past what the loop should inflate
                message = await decode_off_loop(state.delivery, self.app.settings)
        except DecodeError as exc:
            return DeadLetter(exc.reason, exc)
        except Exception as exc:  # a header of an unexpected type, say
            return DeadLetter(constants.REASON_BAD_MESSAGE, exc)
        state.message = message
        task = self.app.tasks.find(message.task)
        if task is None:
            # A caller waiting on the result (Celery replies NotRegistered) learns why.
            return DeadLetter(constants.REASON_UNKNOWN_TASK, self.app.tasks.unknown(message.task))
        state.task = task
        decided = consult(self.hooks.on_decoded, state)
        if decided is not None and (decided := await resolved(decided)) is not None:
            return decided
        state.acks_early = (
            task.acks_early if task.acks_early is not None else self.app.settings.task_acks_early
        )
        limits = self.options.time_limits
        state.limits = resolve_time_limits(
            message.timelimit, (task.soft_time_limit, task.time_limit), (limits.soft, limits.hard)
        )
        decided = consult(self.hooks.before_run, state)
        if decided is not None and (decided := await resolved(decided)) is not None:
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
        if outcome.exception is None:
            if _debug_log.isEnabledFor(logging.DEBUG):
                log.debug("task succeeded", task_id=message.id, task=message.task)
            return Finish(report=outcome)
        if isinstance(outcome.exception, Terminated):
            # Its pool process was stopped on purpose: revoked, not lost (no redelivery).
            return Skip(report=Outcome(states.REVOKED))
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
        decided = consult(self.hooks.on_failure, state)
        if decided is not None and (decided := await resolved(decided)) is not None:
            return decided
        return DeadLetter(
            constants.REASON_FAILED,
            outcome.exception,
            outcome.traceback,
            report=Outcome(
                states.FAILURE, exception=outcome.exception, traceback=outcome.traceback
            ),
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
            return await execute(
                task, state.request, self.pool, limits, self._on_start(state), state
            )
        finally:
            self.running -= 1

    def _on_start(self, state: MessageState) -> StartHook | None:
        """What runs on the loop as the call starts; None when no extension wants it
        (the common case then costs the pool no round trip to the loop)."""
        wanted: list[Extension] = []
        holds_body = False
        in_any_thread = True
        for ext in self.hooks.starters:
            if ext.wants_start(state):
                wanted.append(ext)
                holds_body = holds_body or ext.start_holds_body
                in_any_thread = in_any_thread and ext.start_in_any_thread
        if not wanted:
            return None
        # A partial, not a method of the hook: a hook holding its own bound method is a
        # reference cycle, which keeps the call's whole state for the garbage collector.
        return StartHook(functools.partial(_run_starters, state, wanted), holds_body, in_any_thread)

    async def _after(self, state: MessageState) -> Decision | None:
        for hook in self.hooks.after_run:
            try:
                decided = hook(state)
                if decided is not None and not isinstance(decided, Decision):
                    decided = await decided
            except Exception as exc:
                hook_failed(hook, state, exc)
                continue
            if decided is not None:
                return decided
        return None


def _run_starters(state: MessageState, starters: list[Extension], _started_at: float) -> None:
    """One call's start (``state.started_at`` is set): runs ``starters``' ``on_start``."""
    for ext in starters:
        try:
            ext.on_start(state)
        except Exception as exc:
            hook_failed(ext.on_start, state, exc)
