"""``amqptasks worker -B``: a beat inside a worker, as a worker extension.

The beat starts with the worker (``on_worker_start``) on the worker's event
loop and stops with it (``on_worker_stop``); it campaigns for leadership like
any other beat process, so several ``-B`` workers and ``amqptasks beat``
processes may run together and one sends.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from amqptasks.beat.scheduler import Beat
from amqptasks.worker.extension import Extension

if TYPE_CHECKING:
    from amqptasks.worker.extension import WorkerContext

__all__ = ["BeatExtension"]


class BeatExtension(Extension):
    """Runs a :class:`~amqptasks.beat.scheduler.Beat` while the worker runs."""

    def __init__(self) -> None:
        self.beat: Beat | None = None
        self._task: asyncio.Task[None] | None = None

    async def on_worker_start(self, worker: WorkerContext) -> None:
        self.beat = Beat(worker.app, node_name=f"beat:{worker.hostname}")
        self._task = asyncio.ensure_future(self.beat.run())

    async def on_worker_stop(self, worker: WorkerContext) -> None:
        if self.beat is not None:
            self.beat.stop()
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10.0)
