"""A thread-safe store of the results a client received, with waiters.

Replies arrive on the transport's I/O thread (sync) or event loop (async);
``get()`` waits on a condition and ``aget()`` on a future, so either kind of
caller can wait for a result that either kind of client received. It is the
rpc backend's :class:`~amqptasks.results.store.ResultStore`.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import warnings
from typing import TYPE_CHECKING

from amqptasks.constants import RESULT_BUFFER_SIZE
from amqptasks.exceptions import ResultTimeout
from amqptasks.results import states
from amqptasks.results.store import ResultStore

if TYPE_CHECKING:
    from amqptasks.results.meta import ResultMeta


class ResultBuffer(ResultStore):
    """The latest :class:`ResultMeta` per task id, oldest evicted beyond ``maxsize``."""

    def __init__(self, maxsize: int = RESULT_BUFFER_SIZE) -> None:
        self._maxsize = maxsize
        self._latest: collections.OrderedDict[str, ResultMeta] = collections.OrderedDict()
        self._cond = threading.Condition()
        self._async_waiters: dict[str, list[asyncio.Future[ResultMeta]]] = {}

    def deposit(self, meta: ResultMeta) -> None:
        """Record what the worker said about a task and wake its waiters."""
        with self._cond:
            known = self._latest.get(meta.task_id)
            if (
                known is not None
                and known.status in states.READY_STATES
                and meta.status not in states.READY_STATES
            ):
                return  # a late STARTED/RETRY must not hide the final state
            self._latest[meta.task_id] = meta
            self._latest.move_to_end(meta.task_id)
            while len(self._latest) > self._maxsize:
                self._latest.popitem(last=False)
            waiters = (
                self._async_waiters.pop(meta.task_id, [])
                if meta.status in states.READY_STATES
                else []
            )
            self._cond.notify_all()
        for future in waiters:
            loop = future.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, future, meta)

    def peek(self, task_id: str) -> ResultMeta | None:
        """The newest state received for ``task_id`` (None if nothing yet)."""
        with self._cond:
            return self._latest.get(task_id)

    def get(self, task_id: str, timeout: float | None) -> ResultMeta:
        """Block until ``task_id`` reaches a ready state.

        Raises:
            ResultTimeout: after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                meta = self._latest.get(task_id)
                if meta is not None and meta.status in states.READY_STATES:
                    return meta
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ResultTimeout(f"task {task_id} did not finish within {timeout:g}s")
                self._cond.wait(remaining)

    async def aget(self, task_id: str, timeout: float | None) -> ResultMeta:
        """Async :meth:`get`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ResultMeta] = loop.create_future()
        with self._cond:
            meta = self._latest.get(task_id)
            if meta is not None and meta.status in states.READY_STATES:
                return meta
            self._async_waiters.setdefault(task_id, []).append(future)
        try:
            return await asyncio.wait_for(future, timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise ResultTimeout(f"task {task_id} did not finish within {timeout:g}s") from None
        finally:
            with self._cond:
                waiters = self._async_waiters.get(task_id)
                if waiters and future in waiters:
                    waiters.remove(future)
                    if not waiters:
                        del self._async_waiters[task_id]

    # Names before #21 (``app.results`` is public): deprecated aliases.

    def latest(self, task_id: str) -> ResultMeta | None:
        """Deprecated alias of :meth:`peek`."""
        warnings.warn("ResultBuffer.latest() is now peek()", DeprecationWarning, stacklevel=2)
        return self.peek(task_id)

    def wait(self, task_id: str, timeout: float | None) -> ResultMeta:
        """Deprecated alias of :meth:`get`."""
        warnings.warn("ResultBuffer.wait() is now get()", DeprecationWarning, stacklevel=2)
        return self.get(task_id, timeout)

    async def await_ready(self, task_id: str, timeout: float | None) -> ResultMeta:
        """Deprecated alias of :meth:`aget`."""
        warnings.warn("ResultBuffer.await_ready() is now aget()", DeprecationWarning, stacklevel=2)
        return await self.aget(task_id, timeout)


def _resolve(future: asyncio.Future[ResultMeta], meta: ResultMeta) -> None:
    if not future.done():
        future.set_result(meta)
