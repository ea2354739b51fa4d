"""Tell the caller how its call went: STARTED, then SUCCESS, RETRY, FAILURE or REVOKED.

Replies go to the caller's reply queue (``reply_to``) in Celery's rpc format,
before the delivery is settled. A message that could not be decoded is answered
from what can be read of it, so that a caller waiting on it learns why at once.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from amqptasks.logging import get_logger
from amqptasks.results import states
from amqptasks.worker.decisions import DeadLetter
from amqptasks.worker.extension import Extension
from amqptasks.worker.outcome import Outcome
from amqptasks.worker.outgoing import ReplyTarget

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.extension import WorkerContext
    from amqptasks.worker.sender import Sender
    from amqptasks.worker.state import MessageState

log = get_logger(__name__)

_STARTED = "replies.started"


def reply_target(state: MessageState) -> ReplyTarget | None:
    """Where ``state``'s call reports to; None when nobody waits for it."""
    if state.message is None:
        return ReplyTarget.of_raw(state.delivery)
    if state.task is not None and state.task.ignore_result:
        return None
    return ReplyTarget.of(state.message)


class ResultReplies(Extension):
    """Sends each decision's report (and STARTED with ``task_track_started``)."""

    def __init__(self) -> None:
        self.track_started = False
        self._sender: Sender | None = None

    async def on_worker_start(self, worker: WorkerContext) -> None:
        self.track_started = worker.app.settings.task_track_started
        self._sender = worker.sender

    def wants_start(self, state: MessageState) -> bool:
        return self.track_started

    def on_start(self, state: MessageState) -> None:
        target = reply_target(state)
        if target is not None:
            assert self._sender is not None
            reply = self._sender.reply(target, Outcome(states.STARTED))
            state.note(_STARTED, asyncio.ensure_future(reply))

    def before_settle(self, state: MessageState, decision: Decision) -> Awaitable[None] | None:
        started = state.noted(_STARTED)
        report = decision.report
        if report is None and isinstance(decision, DeadLetter) and not decision.quiet:
            report = Outcome(states.FAILURE, exception=decision.error)
        target = reply_target(state) if report is not None else None
        if started is None and target is None:
            return None
        return self._reply(started, target, report)

    async def _reply(
        self, started: Awaitable[None] | None, target: ReplyTarget | None, report: Outcome | None
    ) -> None:
        if started is not None:  # the STARTED state leaves before the outcome's
            await started
        if target is not None and report is not None:
            assert self._sender is not None
            await self._sender.reply(target, report)
