"""The seam behind :class:`~amqptasks.AsyncResult`: where a task's state is read from.

Today the only store is the client's :class:`~amqptasks.results.buffer.ResultBuffer`
(replies of the rpc backend, collected on the client's reply queue). Group and
chord results will come from the broker-held join instead, through another
store; :class:`AsyncResult` does not care which.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amqptasks.results.meta import ResultMeta


class ResultStore(ABC):
    """Where the states of tasks are found, and waited for, by task id."""

    @abstractmethod
    def peek(self, task_id: str) -> ResultMeta | None:
        """The newest state known for ``task_id`` (None if nothing yet); never waits."""

    @abstractmethod
    def get(self, task_id: str, timeout: float | None) -> ResultMeta:
        """Block until ``task_id`` reaches a ready state (SUCCESS, FAILURE, REVOKED).

        Raises:
            ResultTimeout: after ``timeout`` seconds (None: wait for ever).
        """

    @abstractmethod
    async def aget(self, task_id: str, timeout: float | None) -> ResultMeta:
        """Async :meth:`get`: wait on the running loop without blocking it.

        Raises:
            ResultTimeout: after ``timeout`` seconds (None: wait for ever).
        """
