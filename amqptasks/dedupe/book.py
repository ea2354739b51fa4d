"""Which publish of each task id came first: the claims a worker has read, bounded.

Claims are read from the claims stream in the stream's order, the same order
for every worker, so the first claim of a task id names the same publish
everywhere. A claim is forgotten once it is older than the window, or when the
book holds :data:`MAX_CLAIMS` and newer ones arrive (oldest first).
"""

from __future__ import annotations

import time
from collections import OrderedDict

__all__ = ["MAX_CLAIMS", "ClaimBook"]

#: Claims a worker holds at most (about 330 bytes each, 66 MB in all): beyond it the oldest
#: go first, so at more than ``MAX_CLAIMS / window`` outbox calls a second the window is shorter.
MAX_CLAIMS = 200_000


class ClaimBook:
    """Task id -> the publish id of its first claim, for claims made in the last ``window`` s."""

    def __init__(self, window: float, *, limit: int = MAX_CLAIMS) -> None:
        self.window = window
        self.limit = limit
        #: Task id -> (publish id, UNIX time claimed), in the order the claims were read.
        self._first: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._first)

    def winner(self, task_id: str, now: float | None = None) -> str | None:
        """The publish id that runs ``task_id`` (None: no claim in the window)."""
        claim = self._first.get(task_id)
        if claim is None:
            return None
        if claim[1] < (time.time() if now is None else now) - self.window:
            return None
        return claim[0]

    def add(self, task_id: str, publish_id: str, at: float, now: float | None = None) -> None:
        """A claim read from the stream: kept unless an earlier one in the window holds."""
        now = time.time() if now is None else now
        horizon = now - self.window
        if at < horizon:
            return
        held = self._first.get(task_id)
        if held is not None and held[1] >= horizon:
            return
        self._first.pop(task_id, None)
        self._first[task_id] = (publish_id, at)
        self._prune(horizon)

    def _prune(self, horizon: float) -> None:
        first = self._first
        while first:
            _, (_, at) = next(iter(first.items()))
            if at >= horizon and len(first) <= self.limit:
                return
            first.popitem(last=False)
