"""A job that runs once, a little after it is first asked for: what batches flush on."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Soon"]


class Soon:
    """Runs ``job`` once, ``delay`` seconds after :meth:`ask` is first called; asking
    again before then changes nothing (use on the event loop only).

    Args:
        delay: Seconds from the first ask to the run.
        job: What runs.
    """

    __slots__ = ("_timer", "delay", "job")

    def __init__(self, delay: float, job: Callable[[], None]) -> None:
        self.delay = delay
        self.job = job
        self._timer: asyncio.TimerHandle | None = None

    def ask(self) -> None:
        """Run the job within :attr:`delay` seconds (from the first ask not run yet)."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._run)

    def cancel(self) -> None:
        """Forget the run asked for (the caller runs the job itself)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _run(self) -> None:
        self._timer = None
        self.job()
