"""Hold a rate-limited call until its task's rate allows it (see :mod:`..ratelimit`).

The delivery stays unacked meanwhile, within the prefetch window: a rate-limited
message is never requeued or republished to wait.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from amqptasks.worker.decisions import Requeue
from amqptasks.worker.extension import Extension
from amqptasks.worker.ratelimit import RateLimiter

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.extension import WorkerContext
    from amqptasks.worker.state import MessageState


class RateLimits(Extension):
    """Per-worker rate limits of tasks (``rate_limit="10/s"``)."""

    def __init__(self) -> None:
        self.limiter = RateLimiter()
        self._stopping: asyncio.Event | None = None

    async def on_worker_start(self, worker: WorkerContext) -> None:
        self._stopping = worker.stopping

    def before_run(self, state: MessageState) -> Awaitable[Decision | None] | None:
        task = state.task
        assert task is not None
        if not task.rate_limit:
            return None
        delay = self.limiter.reserve(task.name, task.rate_limit)
        if delay <= 0:
            return None
        return self._wait_turn(task.name, delay)

    async def _wait_turn(self, name: str, delay: float) -> Decision | None:
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except asyncio.TimeoutError:
            return None
        self.limiter.cancel(name, delay)
        return Requeue()  # the worker stops while the call waited for its turn
