"""The worker's concurrency slots, counting the deliveries that wait for one."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class Slots:
    """``concurrency`` slots for running tasks (``async with``), counting who waits for one."""

    __slots__ = ("_free", "on_uncontended", "waiting")

    def __init__(self, concurrency: int) -> None:
        self._free = asyncio.Semaphore(concurrency)
        #: Deliveries ready to run, waiting for a slot.
        self.waiting = 0
        #: Called when the last delivery waiting for a slot got one.
        self.on_uncontended: Callable[[], None] | None = None

    def contended(self) -> bool:
        """True while some delivery waits for a slot."""
        return self.waiting > 0

    async def __aenter__(self) -> None:
        self.waiting += 1
        try:
            await self._free.acquire()
        finally:
            self.waiting -= 1
            if not self.waiting and self.on_uncontended is not None:
                self.on_uncontended()

    async def __aexit__(self, *_exc: object) -> None:
        self._free.release()
