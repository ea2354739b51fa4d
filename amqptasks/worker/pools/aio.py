"""``async def`` tasks: run on the worker's event loop, within their time limits.

Soft limit: :class:`SoftTimeLimitExceeded` is raised inside the coroutine at
the ``await`` it is suspended on, as if that await had failed. The task may
catch it, clean up (awaiting more is fine) and even return normally.

Hard limit: the coroutine is cancelled (``asyncio.CancelledError`` at its
current ``await``; ``finally`` blocks run) and given
:data:`~amqptasks.worker.timelimits.HARD_LIMIT_GRACE` seconds to unwind; the
call is reported failed with :class:`TimeLimitExceeded` either way. A
coroutine that swallows the cancellation keeps running in the background,
abandoned: it no longer counts against the concurrency.

Neither limit can interrupt code that does not ``await`` (a CPU loop, or a
blocking call made on the loop): such code blocks the whole worker, limits
included. Run it as a plain function instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from amqptasks.logging import get_logger
from amqptasks.request import current_request
from amqptasks.worker.outcome import Outcome
from amqptasks.worker.timelimits import HARD_LIMIT_GRACE

if TYPE_CHECKING:
    from collections.abc import Coroutine, Generator

    from amqptasks.policies.limits import TimeLimits
    from amqptasks.request import Request
    from amqptasks.task import Task

log = get_logger(__name__)

#: Coroutines past their hard limit that ignored the cancellation (kept referenced).
_abandoned: set[asyncio.Task[Any]] = set()


class _Interruptible:
    """Await a coroutine, turning one cancellation of ours into SoftTimeLimitExceeded.

    The coroutine is stepped by hand (``send``/``throw``) so that the soft limit
    surfaces inside it, at the ``await`` where it is suspended. The way there is
    the usual one: the driving asyncio task is cancelled, which wakes it with
    ``CancelledError``; a cancellation we asked for as the soft limit is thrown
    into the coroutine as :class:`SoftTimeLimitExceeded` instead (and taken
    back with ``Task.uncancel()`` on Python 3.11+, so that ``asyncio.timeout``
    blocks inside the task keep working).
    """

    __slots__ = ("_coro", "soft_pending")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro
        self.soft_pending = False

    def close(self) -> None:
        """Close a coroutine that never started (no "never awaited" warning)."""
        self._coro.close()

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self._coro
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            try:
                yielded = coro.throw(to_throw) if to_throw is not None else coro.send(to_send)
            except StopIteration as stop:
                return stop.value
            to_send, to_throw = None, None
            try:
                to_send = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except asyncio.CancelledError as exc:
                if self.soft_pending:
                    self.soft_pending = False
                    task = asyncio.current_task()
                    uncancel = getattr(task, "uncancel", None)
                    if uncancel is not None:
                        uncancel()
                    to_throw = SoftTimeLimitExceeded()
                else:
                    to_throw = exc
            except BaseException as exc:
                to_throw = exc


async def _drive(runner: _Interruptible) -> Any:
    return await runner


async def run_async_task(task: Task[Any, Any], request: Request, limits: TimeLimits) -> Outcome:
    """Run the ``async def`` task ``task`` for ``request`` on this loop, within ``limits``."""
    token = current_request.set(request)
    try:
        if not limits:
            try:
                return Outcome.success(await task(*request.args, **request.kwargs))
            except Exception as exc:
                return Outcome.failure(exc)
        runner = _Interruptible(task(*request.args, **request.kwargs))
        inner = asyncio.ensure_future(_drive(runner))  # copies the context set above
    finally:
        current_request.reset(token)
    return await _supervise(inner, runner, request, limits)


async def _supervise(
    inner: asyncio.Task[Any], runner: _Interruptible, request: Request, limits: TimeLimits
) -> Outcome:
    loop = asyncio.get_running_loop()
    soft_fired = False

    def soft_limit() -> None:
        nonlocal soft_fired
        if not inner.done():
            soft_fired = True
            runner.soft_pending = True
            inner.cancel()
            log.warning(
                "task passed its soft time limit", task_id=request.id, soft_time_limit=limits.soft
            )

    soft_timer = loop.call_later(limits.soft, soft_limit) if limits.soft is not None else None
    try:
        done, _ = await asyncio.wait({inner}, timeout=limits.hard)
    except asyncio.CancelledError:
        inner.cancel()
        raise
    finally:
        if soft_timer is not None:
            soft_timer.cancel()
    if done:
        try:
            return Outcome.success(inner.result())
        except asyncio.CancelledError as exc:
            runner.close()  # cancelled before it first ran
            return Outcome.failure(SoftTimeLimitExceeded() if soft_fired else exc)
        except Exception as exc:
            return Outcome.failure(exc)
    runner.soft_pending = False
    inner.cancel()
    await asyncio.wait({inner}, timeout=HARD_LIMIT_GRACE)
    if not inner.done():
        _abandoned.add(inner)
        inner.add_done_callback(_abandoned.discard)
        log.error(
            "task ignored its cancellation at the hard time limit; abandoned, still running",
            task_id=request.id,
            abandoned=len(_abandoned),
        )
    else:
        with contextlib.suppress(BaseException):
            inner.result()  # retrieve it: no "exception never retrieved" warning
    stopped = TimeLimitExceeded(
        f"task {request.task} ({request.id}) exceeded its hard time limit of {limits.hard:g}s"
    )
    return Outcome.failure(stopped)
