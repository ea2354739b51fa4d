"""GroupResult: the results of a group's members, in the order they were given."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import ResultTimeout

if TYPE_CHECKING:
    from collections.abc import Iterator

    from amqptasks.results.result import AsyncResult


class GroupResult:
    """The handles of a group's members (``results``), in order.

    Example:
        >>> group(add.s(i, i) for i in range(3)).delay().get(timeout=10)
        [0, 2, 4]
    """

    def __init__(self, id: str, results: list[AsyncResult]) -> None:
        self.id = id
        self.results = list(results)
        #: What ran before the group (a chain's previous step), when known.
        self.parent: Any = None

    children = property(lambda self: self.results, doc="Celery's name of :attr:`results`.")

    def __repr__(self) -> str:
        return f"<GroupResult {self.id} {self.completed_count()}/{len(self.results)} done>"

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[AsyncResult]:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult:
        return self.results[index]

    def completed_count(self) -> int:
        """How many members succeeded so far."""
        return sum(1 for result in self.results if result.successful())

    def ready(self) -> bool:
        """True once every member finished (succeeded, failed or was revoked)."""
        return all(result.ready() for result in self.results)

    def successful(self) -> bool:
        """True when every member succeeded."""
        return all(result.successful() for result in self.results)

    def failed(self) -> bool:
        """True when any member failed."""
        return any(result.failed() for result in self.results)

    def get(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        """Wait for every member; their values in order.

        Args:
            timeout: Seconds to wait for all of them together; None waits for ever.
            propagate: Re-raise the first failed member's exception (default);
                if False, its exception takes its place in the list.

        Raises:
            ResultTimeout: not all members finished in time.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        values = []
        for result in self.results:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise ResultTimeout(f"group {self.id} did not finish within {timeout:g}s")
            values.append(result.get(timeout=left, propagate=propagate))
        return values

    async def aget(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        """Async :meth:`get`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        values = []
        for result in self.results:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise ResultTimeout(f"group {self.id} did not finish within {timeout:g}s")
            values.append(await result.aget(timeout=left, propagate=propagate))
        return values
