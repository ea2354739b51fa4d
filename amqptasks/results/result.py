"""AsyncResult: the handle ``delay()`` returns."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Final

from amqptasks.exceptions import ConfigError
from amqptasks.results import states
from amqptasks.results.meta import ResultMeta, rebuild_exception

if TYPE_CHECKING:
    from amqptasks.results.store import ResultStore

#: "Not given" (None is a meaningful ``store``: no result will come).
_UNSET: Final[Any] = object()


class AsyncResult:
    """The state and result of one task, as its worker reported them.

    Args:
        id: The task id.
        store: Where the task's state is read from (the client's reply
            buffer, for the rpc backend); ``None`` when the task was sent with
            ``ignore_result`` (no result will ever come).
        task_name: The task's name, for messages.
        buffer: Deprecated name of ``store``.

    Example:
        >>> r = add.delay(2, 3)
        >>> r.get(timeout=10)
        5
    """

    def __init__(
        self,
        id: str,
        *,
        store: ResultStore | None = _UNSET,
        task_name: str = "",
        buffer: ResultStore | None = _UNSET,
    ) -> None:
        if buffer is not _UNSET:
            warnings.warn(
                "AsyncResult(buffer=) is now AsyncResult(store=)", DeprecationWarning, stacklevel=2
            )
            if store is not _UNSET:
                raise TypeError("pass store= only (buffer= is its old name)")
            store = buffer
        if store is _UNSET:
            raise TypeError("AsyncResult() needs store= (None: no result will come)")
        self.id = id
        self.task_name = task_name
        self._store = store
        #: The step before this one in a chain (or a chord's members), when known.
        self.parent: Any = None

    @property
    def task_id(self) -> str:
        """Alias of :attr:`id` (Celery spelling)."""
        return self.id

    def __repr__(self) -> str:
        return f"<AsyncResult {self.task_name or 'task'} {self.id} {self.state}>"

    def _meta(self) -> ResultMeta | None:
        return self._store.peek(self.id) if self._store is not None else None

    @property
    def state(self) -> str:
        """PENDING, STARTED, RETRY, SUCCESS, FAILURE or REVOKED."""
        meta = self._meta()
        return meta.status if meta is not None else states.PENDING

    status = state

    def ready(self) -> bool:
        """True once the task succeeded, failed or was revoked."""
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        """True if the task succeeded."""
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        """True if the task failed (or was revoked)."""
        return self.state in (states.FAILURE, states.REVOKED)

    @property
    def result(self) -> Any:
        """The return value, the exception if it failed, or None while not ready."""
        meta = self._meta()
        if meta is None:
            return None
        return _value(meta)

    @property
    def traceback(self) -> str | None:
        """The remote traceback of a failed task."""
        meta = self._meta()
        return meta.traceback if meta is not None else None

    def _need_store(self) -> ResultStore:
        if self._store is None:
            raise ConfigError(
                f"no result will come for task {self.task_name or ''} {self.id}: it was sent "
                f"with ignore_result=True"
            )
        return self._store

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """Wait for the task to finish and return its value.

        Do not call this from a coroutine on the loop that receives the
        replies; use :meth:`aget` there.

        Args:
            timeout: Seconds to wait; None waits for ever.
            propagate: Re-raise the task's exception (default); if False, return it.

        Raises:
            ResultTimeout: the task did not finish in time.
            Exception: the task's own exception, rebuilt, with the remote traceback.
        """
        meta = self._need_store().get(self.id, timeout)
        return _finish(meta, propagate)

    async def aget(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """Async :meth:`get`."""
        meta = await self._need_store().aget(self.id, timeout)
        return _finish(meta, propagate)


def _value(meta: ResultMeta) -> Any:
    if meta.status in (states.FAILURE, states.REVOKED, states.RETRY):
        return rebuild_exception(meta.result, meta.traceback)
    return meta.result


def _finish(meta: ResultMeta, propagate: bool) -> Any:
    value = _value(meta)
    if propagate and meta.status != states.SUCCESS and isinstance(value, BaseException):
        raise value
    return value
