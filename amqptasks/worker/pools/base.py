"""The seam between the worker and where plain-function tasks run."""

from __future__ import annotations

import abc
import contextlib
import contextvars
import time
from typing import TYPE_CHECKING, Any, Protocol

from amqptasks.request import call_wrappers, current_request

if TYPE_CHECKING:
    from collections.abc import Callable

    from amqptasks.policies.limits import TimeLimits
    from amqptasks.request import Request
    from amqptasks.task import Task
    from amqptasks.worker.outcome import Outcome


class StartRecord(Protocol):
    """Where a pool writes the wall-clock time a call starts (the worker's
    :class:`~amqptasks.worker.state.MessageState`)."""

    started_at: float | None


class StartHook:
    """What runs on the event loop as a call starts (see :meth:`ExecutionPool.run`).

    ``holds_body``: the task body waits until it ran (``task_prerun``, the STARTED
    reply). Hooks that only note the start (a span, a log line) do not need that: a
    pool thread then notes the start and goes on, and the loop runs the hook a little
    later, with the time the call really started. ``in_any_thread``: the hook only
    records (an append, an attribute) and is thread-safe, so a pool may run it in the
    thread that starts the call, just before the body, with no turn of the loop.

    A plain class rather than a dataclass, whose flags may be given by position: the
    worker makes one per call, and a frozen dataclass's ``__init__``, or keyword
    arguments, cost several times as much.
    """

    __slots__ = ("holds_body", "in_any_thread", "run")

    def __init__(
        self,
        run: Callable[[float], None],
        holds_body: bool = True,
        in_any_thread: bool = False,
    ) -> None:
        #: Given the wall-clock time the call started.
        self.run = run
        self.holds_body = holds_body
        self.in_any_thread = in_any_thread

    def __call__(self, started_at: float | None = None) -> None:
        self.run(time.time() if started_at is None else started_at)


class ExecutionPool(abc.ABC):
    """Runs sync task bodies off the event loop; ``async def`` tasks never come here.

    The worker calls :meth:`start` before it consumes, :meth:`run` once per
    call (never more at once than the worker's concurrency, unless the pool
    :attr:`queues_ahead`) and :meth:`close` after the last call returned (or,
    for a cold shutdown, without waiting).
    """

    #: The pool's name as ``--pool`` spells it.
    name: str = ""
    #: The pool takes every call it is given at once, runs as many as it has runners
    #: and starts the others, in order, as runners free up: a runner that finishes
    #: finds its next call waiting, without a round trip through the event loop. The
    #: worker's prefetch bounds the queue; :meth:`withdraw_queued` takes back the
    #: calls not started yet (warm shutdown).
    queues_ahead: bool = False

    async def start(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Prepare the pool (threads, child processes) before the first call."""

    @abc.abstractmethod
    async def run(
        self,
        task: Task[Any, Any],
        request: Request,
        limits: TimeLimits,
        on_start: Callable[[], None] | None = None,
        record: StartRecord | None = None,
    ) -> Outcome:
        """Run ``task`` for ``request`` within ``limits``; never raises for the task's errors.

        ``record.started_at`` is set to the wall-clock time the call starts, before
        ``on_start`` runs: in the thread that runs the body, just before it, or on the
        loop as the call is handed to a child process.

        ``on_start`` is called on the event loop as the call starts, before the task
        body runs (the STARTED state, ``task_prerun``); it must not raise. A
        :class:`StartHook` with ``holds_body=False`` may run while the body already
        runs, but always before the call's outcome is handed back; one
        ``in_any_thread`` may run in the thread that runs the body, just before it.
        """

    @property
    def queued(self) -> int:
        """Calls queued in the pool, not started yet (see :attr:`queues_ahead`)."""
        return 0

    def withdraw_queued(self) -> int:
        """Resolve the calls queued but not started with :class:`NotStarted`; how many."""
        return 0

    def terminate(self, task_id: str, signum: int) -> bool:
        """Stop the running call of ``task_id`` (``revoke(terminate=True)``), as far as the
        pool can; returns whether it did. Only the ``processes`` pool can: it signals the
        child that runs the call (a thread or a coroutine cannot be stopped from outside)."""
        return False

    async def close(self, *, cold: bool = False) -> None:  # noqa: B027 - optional hook
        """Release the pool; ``cold`` stops work still running (as far as the pool can)."""

    def describe(self) -> str:
        """One line for the start-up banner."""
        return self.name


class NotStarted(Exception):
    """A queued call taken back before it started (warm shutdown): it goes back to its queue."""


def call_task(task: Task[Any, Any], request: Request) -> Any:
    """Call ``task`` with the request's arguments, ``self.request`` set for its duration."""
    token = current_request.set(request)
    try:
        if not call_wrappers:
            return task(*request.args, **request.kwargs)
        with contextlib.ExitStack() as stack:
            for wrapper in list(call_wrappers):
                stack.enter_context(wrapper(request))
            return task(*request.args, **request.kwargs)
    finally:
        current_request.reset(token)


def task_context() -> contextvars.Context:
    """A copy of the caller's context (structlog's bound task id, say) for another thread."""
    return contextvars.copy_context()
