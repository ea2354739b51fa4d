"""Carry out a delivery's decision: publish what it needs (confirmed), then settle it once.

What cannot be carried out does not leave the delivery unsettled: a broker
failure gives the message back to its queue (where it counts as a delivery, so
the delivery cap ends a failure that lasts); a copy that cannot be made (a countdown
the delay levels cannot hold, a header no publisher can encode) dead-letters it;
a dead letter that cannot be published is rejected to the queue's own
dead-letter exchange.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amqptasks import constants
from amqptasks.exceptions import BrokerError, ConfigError
from amqptasks.logging import get_logger
from amqptasks.worker.decisions import (
    CannotSettle,
    DeadLetter,
    Defer,
    Finish,
    Requeue,
    RetryLater,
    Skip,
)
from amqptasks.worker.extension import describe, hook_failed

if TYPE_CHECKING:
    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.extension import Hooks
    from amqptasks.worker.sender import Sender
    from amqptasks.worker.state import MessageState

log = get_logger(__name__)


class Settler:
    """Turns decisions into broker actions for one worker (see the module docstring)."""

    def __init__(self, sender: Sender, hooks: Hooks) -> None:
        self.sender = sender
        self.hooks = hooks

    async def settle(
        self, state: MessageState, decision: Decision, *, fallback: bool = False
    ) -> None:
        """Tell the extensions, then carry ``decision`` out; settles the delivery once.

        A ``before_settle`` hook that raises :class:`CannotSettle` stops it: the
        delivery is handled as a decision that could not be carried out (requeued
        after a broker failure, else dead-lettered). Not for a ``fallback``
        dead letter, which nothing stops.
        """
        try:
            await _notify(self.hooks.before_settle, state, decision, stoppable=not fallback)
        except CannotSettle as stopped:
            await self._could_not_carry_out(state, decision, stopped.cause, attempted=False)
            return
        try:
            await self._carry_out(state, decision)
        except Exception as exc:
            await self._could_not_carry_out(state, decision, exc, attempted=True)

    async def _carry_out(self, state: MessageState, decision: Decision) -> None:
        settlement = state.settlement
        if isinstance(decision, Finish | Skip):
            await settlement.ack()
        elif isinstance(decision, Requeue):
            await settlement.requeue()
        elif isinstance(decision, RetryLater):
            await _notify(self.hooks.on_retry, state, decision)
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
        self, state: MessageState, decision: Decision, exc: BaseException, *, attempted: bool
    ) -> None:
        """A copy could not be published: back to the queue after a broker failure, else
        dead-letter.

        A requeued message counts as a delivery (see :mod:`.rules.deliveries`): a
        broker failure that lasts ends with the message in its dead-letter queue
        (``delivery-limit``) after ``worker_max_deliveries`` tries, never in a loop.
        """
        if isinstance(exc, BrokerError):
            log.error(
                "could not settle a task; it will be delivered again",
                task_id=state.task_id,
                error=describe(exc),
            )
            await state.settlement.requeue()
            return
        if attempted and isinstance(decision, DeadLetter):  # _dead_letter fell back already
            return
        # A countdown or ETA the delay levels cannot hold, or a copy that cannot be made.
        reason = (
            constants.REASON_BAD_ETA
            if isinstance(exc, ConfigError)
            else constants.REASON_WORKER_ERROR
        )
        await self.settle(state, DeadLetter(reason, exc), fallback=True)

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
        await _notify(self.hooks.on_dead_letter, state, decision)
        if dlq is None:
            await state.settlement.reject()  # the queue has no DLQ: the operator chose to drop
            return
        try:
            await self.sender.dead_letter(delivery, queue, decision)
        except Exception as exc:
            # Fall back on the queue's own dead-letter exchange (no reason headers).
            log.error(
                "dead-letter publish failed; rejecting to the queue's DLX", error=describe(exc)
            )
            await state.settlement.reject()
            return
        await state.settlement.ack()


async def _notify(
    hooks: list[Any], state: MessageState, decision: Decision, *, stoppable: bool = False
) -> None:
    for hook in hooks:
        try:
            waiting = hook(state, decision)
            if waiting is not None:
                await waiting
        except CannotSettle:
            if stoppable:
                raise
            hook_failed(hook, state, RuntimeError("CannotSettle where nothing can be stopped"))
        except Exception as exc:
            hook_failed(hook, state, exc)
