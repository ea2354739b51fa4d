"""Threads (``threads``, ``solo``, and plain functions under ``asyncio``).

Time limits in a thread are as strong as CPython allows, and no stronger:

- Soft limit: :class:`SoftTimeLimitExceeded` is raised asynchronously in the
  thread (``PyThreadState_SetAsyncExc``). CPython delivers it when the thread
  next runs Python bytecode: a thread blocked inside one C call (``time.sleep``,
  a socket read without timeout, a long NumPy operation) sees it only when that
  call returns.
- Hard limit: a thread cannot be killed. At the hard limit the call is
  reported failed with :class:`TimeLimitExceeded` and the worker settles its
  message at once; the thread is marked abandoned and gets
  :class:`TimeLimitExceeded` raised asynchronously as well (same delivery
  rules as above), and a new thread takes its place, so the pool keeps its
  capacity. When the abandoned thread's function finally returns, the thread
  ends and its result is discarded; until then it keeps using CPU and memory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from amqptasks.logging import get_logger
from amqptasks.worker.outcome import Outcome
from amqptasks.worker.pools.base import (
    ExecutionPool,
    NotStarted,
    StartHook,
    call_task,
    task_context,
)

if TYPE_CHECKING:
    import contextvars
    from collections.abc import Callable

    from amqptasks.policies.limits import TimeLimits
    from amqptasks.request import Request
    from amqptasks.task import Task
    from amqptasks.worker.pools.base import StartRecord

log = get_logger(__name__)

_INTERRUPTS = (SoftTimeLimitExceeded, TimeLimitExceeded)
#: Seconds within which the loop runs the start hooks that do not hold the body
#: (events, metrics), while calls keep it busy; it backs off to
#: :data:`START_REPORT_MAX_DELAY` while nothing starts. Waking the loop from a pool
#: thread for every start cost more than the hooks themselves.
START_REPORT_DELAY = 0.02
START_REPORT_MAX_DELAY = 1.0


def _set_async_exc(thread_id: int, exc_type: type[BaseException] | None) -> int:
    """Raise ``exc_type`` in thread ``thread_id`` (None: withdraw a pending one)."""
    exc = ctypes.py_object(exc_type) if exc_type is not None else None
    return int(ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), exc))


class _Job:
    """One call handed to a thread; resolved exactly once, on the loop."""

    __slots__ = (
        "context",
        "future",
        "gate",
        "hard_timer",
        "limits",
        "loop",
        "on_start",
        "record",
        "request",
        "soft_timer",
        "started_at",
        "task",
        "thread",
    )

    def __init__(
        self,
        task: Task[Any, Any],
        request: Request,
        limits: TimeLimits,
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context,
        on_start: Callable[[], None] | None,
        record: StartRecord | None,
    ) -> None:
        self.task = task
        self.request = request
        self.limits = limits
        self.loop = loop
        self.context = context
        self.on_start = on_start
        #: Given the time the call starts, as a thread picks it up.
        self.record = record
        #: Set by the loop once ``on_start`` ran: the body waits for it.
        self.gate: threading.Event | None = None
        #: Wall-clock time a thread picked it up (for a start reported later).
        self.started_at: float | None = None
        self.future: asyncio.Future[Outcome] = loop.create_future()
        self.thread: _TaskThread | None = None
        self.soft_timer: asyncio.TimerHandle | None = None
        self.hard_timer: asyncio.TimerHandle | None = None

    def resolve(self, outcome: Outcome) -> None:
        """Set the outcome unless the hard limit already did (call on the loop)."""
        for timer in (self.soft_timer, self.hard_timer):
            if timer is not None:
                timer.cancel()
        if not self.future.done():
            self.future.set_result(outcome)


class _TaskThread(threading.Thread):
    """A pool thread: takes jobs until told to stop, or until it is abandoned."""

    def __init__(self, pool: ThreadPool, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.pool = pool
        self.lock = threading.Lock()
        self.job: _Job | None = None
        self.interrupted = False
        self.abandoned = False

    def run(self) -> None:
        while not self.abandoned:
            job = self.pool.jobs.get()
            if job is None:
                return
            # An interruption that arrived after its job had ended is ignored.
            with contextlib.suppress(*_INTERRUPTS):
                self._run(job)

    def _run(self, job: _Job) -> None:
        outcome: Outcome | None = None
        try:
            with self.lock:
                self.job = job
            job.thread = self
            job.started_at = started_at = time.time()
            if job.record is not None:
                job.record.started_at = started_at
            hook = job.on_start
            if isinstance(hook, StartHook) and hook.in_any_thread:
                hook.run(started_at)  # it only records: here, before the body, loop untouched
                hook = job.on_start = None
            if hook is not None and getattr(hook, "holds_body", True):
                job.gate = threading.Event()  # it runs on the loop, before the body
                _call_soon(job.loop, self.pool.started, job)
                job.gate.wait()
            elif job.limits:  # its timers start now: wake the loop
                self.pool.starting(job)
            elif hook is not None:  # the loop reports it soon, without a wake-up
                self.pool.starting(job, wake=False)
            outcome = job.context.run(_call, job.task, job.request)
        except BaseException as exc:  # an interruption that landed between the lines above
            if outcome is None:
                outcome = Outcome.failure(exc)
        finally:
            while True:
                try:
                    self._finish()
                    break
                except _INTERRUPTS:
                    pass  # it was delivered here instead: it is spent; try again
            if outcome is None:  # a second interruption hit the handler above
                outcome = Outcome.failure(TimeLimitExceeded())
            self.pool.finished(job, outcome)

    def _finish(self) -> None:
        """Stop being interruptible; withdraw an interruption not delivered yet."""
        with self.lock:
            self.job = None
            if self.interrupted:
                self.interrupted = False
                _set_async_exc(self.ident or 0, None)

    def interrupt(self, job: _Job, exc_type: type[BaseException]) -> bool:
        """Raise ``exc_type`` in this thread if it is still running ``job``."""
        with self.lock:
            if self.job is not job or self.ident is None:
                return False
            if _set_async_exc(self.ident, exc_type) != 1:
                return False
            self.interrupted = True
            return True


def _call(task: Task[Any, Any], request: Request) -> Outcome:
    try:
        return Outcome.success(call_task(task, request))
    except BaseException as exc:  # SystemExit from a task must not end the pool thread
        return Outcome.failure(exc)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(callback, *args)


class ThreadPool(ExecutionPool):
    """``size`` threads running plain-function tasks (see the module docstring).

    Args:
        size: Threads (tasks running at once in this pool).
        name: The pool's name for the banner (``threads``, ``solo``, ``asyncio``).
        queues_ahead: Take every call at once and queue those no thread is free for
            (see :attr:`ExecutionPool.queues_ahead`).
    """

    def __init__(self, size: int, *, name: str = "threads", queues_ahead: bool = False) -> None:
        self.name = name
        self.size = size
        self.queues_ahead = queues_ahead
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: set[_TaskThread] = set()
        self._abandoned: set[_TaskThread] = set()
        self._count = 0
        # Outcomes travel back in batches: one loop wake-up for all the calls that
        # finished meanwhile, rather than one per call.
        self._finished: collections.deque[tuple[_Job, Outcome]] = collections.deque()
        self._wake_pending = False
        # Starts the body does not wait for go the same way.
        self._starting: collections.deque[_Job] = collections.deque()
        self._start_wake_pending = False
        # Calls in flight whose start is reported lazily, and the timer that does it.
        self._reporting = 0
        self._report_timer: asyncio.TimerHandle | None = None
        self._report_delay = START_REPORT_DELAY

    def _start_thread(self) -> None:
        self._count += 1
        thread = _TaskThread(self, f"amqptasks-{self.name}-{self._count}")
        self._threads.add(thread)
        thread.start()

    async def start(self) -> None:
        """Start the threads."""
        while len(self._threads) < self.size:
            self._start_thread()

    async def run(
        self,
        task: Task[Any, Any],
        request: Request,
        limits: TimeLimits,
        on_start: Callable[[], None] | None = None,
        record: StartRecord | None = None,
    ) -> Outcome:
        """Run ``task`` in a pool thread; wait for it without blocking the loop."""
        if not self._threads:
            await self.start()
        loop = asyncio.get_running_loop()
        job = _Job(task, request, limits, loop, task_context(), on_start, record)
        self.jobs.put(job)
        if (
            on_start is None
            or (isinstance(on_start, StartHook) and on_start.in_any_thread)
            or getattr(on_start, "holds_body", True)
        ):
            return await job.future
        self._reporting += 1
        self._report_starts_soon(loop)
        try:
            return await job.future
        finally:
            self._reporting -= 1

    def _report_starts_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop: starts noted by threads from now on are reported within
        :data:`START_REPORT_DELAY` (a call starts after it was handed over, or after the
        call before it in its thread finished: both come through the loop)."""
        self._report_delay = START_REPORT_DELAY
        timer = self._report_timer
        if timer is not None:
            if timer.when() <= loop.time() + START_REPORT_DELAY:
                return
            timer.cancel()
        self._report_timer = loop.call_later(START_REPORT_DELAY, self._report_starts, loop)

    def _report_starts(self, loop: asyncio.AbstractEventLoop) -> None:
        self._report_timer = None
        if self._starting:
            self._drain_starting()
            self._report_delay = START_REPORT_DELAY
        else:
            self._report_delay = min(self._report_delay * 2, START_REPORT_MAX_DELAY)
        if self._reporting > 0:
            self._report_timer = loop.call_later(self._report_delay, self._report_starts, loop)

    @property
    def queued(self) -> int:
        """Calls no thread has picked up yet."""
        return self.jobs.qsize()

    def withdraw_queued(self) -> int:
        """Take back the calls no thread has picked up yet (on the loop)."""
        withdrawn: list[_Job] = []
        stops = 0
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                stops += 1
            else:
                withdrawn.append(job)
        for _ in range(stops):  # a closing pool's threads still end
            self.jobs.put(None)
        for job in withdrawn:
            job.resolve(Outcome.failure(NotStarted(f"{job.request.task} ({job.request.id})")))
        return len(withdrawn)

    def finished(self, job: _Job, outcome: Outcome) -> None:
        """In a pool thread: hand ``outcome`` back to the loop."""
        self._finished.append((job, outcome))
        if not self._wake_pending:
            self._wake_pending = True
            _call_soon(job.loop, self._resolve_finished)

    def starting(self, job: _Job, *, wake: bool = True) -> None:
        """In a pool thread: ``job`` starts; the loop runs :meth:`started` soon, in a
        batch (at once with ``wake``, else within :data:`START_REPORT_DELAY`)."""
        self._starting.append(job)
        # A wake-up for finished calls is on its way: it runs the starts first.
        if wake and not self._start_wake_pending and not self._wake_pending:
            self._start_wake_pending = True
            _call_soon(job.loop, self._run_starting)

    def _run_starting(self) -> None:
        self._start_wake_pending = False
        self._drain_starting()

    def _drain_starting(self) -> None:
        starting = self._starting
        while starting:
            self.started(starting.popleft())

    def _resolve_finished(self) -> None:
        self._wake_pending = False  # first: a call finishing from now on wakes us again
        # A call's start was queued before its outcome: run the starts first, so no
        # hook sees a call end before it started.
        self._drain_starting()
        finished = self._finished
        while finished:
            job, outcome = finished.popleft()
            job.resolve(outcome)
        if self._reporting > 0 and self._report_delay > START_REPORT_DELAY:
            # A thread that just finished takes its next call now: report it soon.
            self._report_starts_soon(asyncio.get_running_loop())

    def started(self, job: _Job) -> None:
        """On the loop, as a thread picks ``job`` up: ``on_start``, then its time limits."""
        loop = job.loop
        try:
            if job.future.done():
                return
            hook = job.on_start
            if isinstance(hook, StartHook):
                hook(job.started_at)
            elif hook is not None:
                hook()
            if job.limits.soft is not None:
                job.soft_timer = loop.call_later(job.limits.soft, self._soft_limit, job)
            if job.limits.hard is not None:
                job.hard_timer = loop.call_later(job.limits.hard, self._hard_limit, job)
        finally:
            if job.gate is not None:
                job.gate.set()

    def _soft_limit(self, job: _Job) -> None:
        if job.thread is not None and job.thread.interrupt(job, SoftTimeLimitExceeded):
            log.warning(
                "task passed its soft time limit",
                task_id=job.request.id,
                soft_time_limit=job.limits.soft,
            )

    def _hard_limit(self, job: _Job) -> None:
        thread = job.thread
        if job.future.done() or thread is None:
            return
        thread.abandoned = True
        thread.interrupt(job, TimeLimitExceeded)
        self._threads.discard(thread)
        self._abandoned = {t for t in self._abandoned if t.is_alive()} | {thread}
        self._start_thread()
        log.error(
            "task passed its hard time limit; its thread is abandoned and replaced",
            task_id=job.request.id,
            time_limit=job.limits.hard,
            abandoned_threads=len(self._abandoned),
        )
        job.resolve(
            Outcome.failure(
                TimeLimitExceeded(
                    f"task {job.request.task} ({job.request.id}) exceeded its hard time limit "
                    f"of {job.limits.hard:g}s"
                )
            )
        )

    async def close(self, *, cold: bool = False) -> None:
        """Let the threads end after their current job (they are daemons: never joined)."""
        for _ in self._threads:
            self.jobs.put(None)
        self._threads.clear()

    @property
    def abandoned(self) -> int:
        """Abandoned threads still running (hard time limits)."""
        return sum(1 for t in self._abandoned if t.is_alive())

    def describe(self) -> str:
        return f"{self.name} ({self.size} thread{'s' if self.size != 1 else ''})"
