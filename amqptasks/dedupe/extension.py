"""The worker rule that runs one publish per task id of calls that carry a publish id.

Only deliveries with an ``x-publish-id`` header are looked at (the outbox relay
sets one per publish); for any other delivery this rule costs a dictionary look-up.
The first such delivery opens the claims stream (:mod:`amqptasks.dedupe.stream`).

For a marked delivery of task id *T* and publish id *P*:

- the first claim of *T* in the window is *P*: run it (the publish that won,
  delivered again after a worker died, or a retry of it);
- it is another publish: a redundant publish of the same call; acked without
  running (``Skip``), counted in :attr:`Dedupe.suppressed` and logged at info;
- no claim yet: claim *T* for *P* on the stream, then decide as above.

A claim that cannot be made (the broker away, no answer in time) gives the
delivery back to its queue (``Requeue``): it is neither run unchecked nor lost;
the delivery cap (``worker_max_deliveries``) ends a failure that lasts.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from amqptasks import constants
from amqptasks.dedupe.book import ClaimBook
from amqptasks.dedupe.stream import MAX_WINDOW, ClaimStream, open_stream
from amqptasks.logging import get_logger
from amqptasks.worker.decisions import Requeue, Skip
from amqptasks.worker.extension import Extension, describe

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.extension import WorkerContext
    from amqptasks.worker.state import MessageState

__all__ = ["Dedupe"]

log = get_logger(__name__)


class Dedupe(Extension):
    """Runs the first publish of each marked task id once; later publishes are skipped."""

    def __init__(self) -> None:
        self.window = 0.0
        #: Redundant publishes acked without running, since the worker started.
        self.suppressed = 0
        self.book: ClaimBook | None = None
        self._context: WorkerContext | None = None
        self._stream: ClaimStream | None = None
        self._opening = asyncio.Lock()

    async def on_worker_start(self, worker: WorkerContext) -> None:
        self._context = worker
        self.window = min(worker.app.settings.worker_dedupe_window, MAX_WINDOW)

    async def on_worker_stop(self, worker: WorkerContext) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()

    def on_decoded(self, state: MessageState) -> Awaitable[Decision | None] | None:
        headers = state.delivery.headers
        publish_id = headers.get(constants.HEADER_PUBLISH_ID) if headers else None
        if not publish_id or not isinstance(publish_id, str) or self.window <= 0:
            return None  # not marked by a relay: no coroutine, no wait
        return self._check(state.task_id or "", publish_id)

    async def _check(self, task_id: str, publish_id: str) -> Decision | None:
        winner = self.book.winner(task_id) if self.book is not None else None
        if winner is None:
            try:
                stream = await self._open()
                winner = await stream.claim(task_id, publish_id)
            except Exception as exc:
                log.warning(
                    "duplicate check unavailable; the call goes back to its queue",
                    task_id=task_id,
                    error=describe(exc),
                )
                return Requeue()
        if winner is None or winner == publish_id:
            return None
        self.suppressed += 1
        log.info(
            "redundant publish skipped: this task id ran from an earlier publish",
            task_id=task_id,
            publish_id=publish_id,
            first_publish_id=winner,
            suppressed=self.suppressed,
        )
        return Skip()

    async def _open(self) -> ClaimStream:
        async with self._opening:
            if self._stream is None:
                context = self._context
                assert context is not None, "on_worker_start() first"
                book = self.book or ClaimBook(self.window)
                settings = context.app.settings
                timeout = settings.publish_timeout
                self._stream = await open_stream(
                    book, context.hostname, settings.broker, publish_timeout=timeout
                )
                self.book = book
            return self._stream
