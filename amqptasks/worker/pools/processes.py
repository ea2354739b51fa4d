"""The ``processes`` pool: plain-function tasks in child processes.

The AMQP connection, acks, results and heartbeats stay in the worker process on
its event loop; children only run task bodies, one call at a time each, so a
CPU-bound task never delays a heartbeat. Children are started with the
``spawn`` method (a fresh interpreter, never a ``fork`` of a process that has
threads and an event loop) and import the app by its path (``-A``).

- A child that dies mid-task (SIGKILL, the OOM killer, a crash in C code) is
  reported as :class:`WorkerLost`; the worker puts the message back in its queue,
  where the redelivery count caps how often that can happen. A new child takes
  its place.
- Soft time limit: ``SIGALRM`` in the child raises :class:`SoftTimeLimitExceeded`
  in the task (this interrupts ``time.sleep`` and blocking system calls too).
- Hard time limit: the child is killed (SIGKILL) and replaced; the call fails with
  :class:`TimeLimitExceeded`.
- ``max_tasks_per_child`` / ``max_memory_per_child`` (KiB of resident memory,
  measured after each task): the child finishes its task, then is replaced.
- Children ignore SIGINT, SIGTERM and SIGQUIT (the worker decides about
  shutdowns) and, on Linux, are killed when the worker process dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import signal
import time
from typing import TYPE_CHECKING, Any

from amqptasks import logging as amqptasks_logging
from amqptasks.exceptions import (
    ConfigError,
    Terminated,
    TimeLimitExceeded,
    WorkerLost,
)
from amqptasks.logging import get_logger
from amqptasks.results import states
from amqptasks.results.meta import rebuild_exception
from amqptasks.worker.outcome import Outcome
from amqptasks.worker.pools import _child
from amqptasks.worker.pools.base import ExecutionPool

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from amqptasks.policies.limits import TimeLimits
    from amqptasks.request import Request
    from amqptasks.task import Task
    from amqptasks.worker.pools.base import StartRecord

log = get_logger(__name__)

#: Seconds a child may take to import the app and say it is ready.
START_TIMEOUT = 120.0
#: Seconds children get to exit after being told to, at shutdown, before SIGKILL.
EXIT_TIMEOUT = 10.0
#: Seconds between attempts to start a replacement child that failed to start.
RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


class _Child:
    """One child process and what the parent knows about it."""

    __slots__ = (
        "conn",
        "exited",
        "job",
        "killed_with",
        "pid",
        "process",
        "ready",
        "retiring",
        "task_id",
        "tasks",
    )

    def __init__(self, process: BaseProcess, conn: Connection, loop: asyncio.AbstractEventLoop):
        self.process = process
        self.conn = conn
        self.pid = process.pid or 0
        self.ready: asyncio.Future[None] = loop.create_future()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.job: asyncio.Future[Outcome] | None = None
        self.tasks = 0
        self.retiring = False
        #: What its call ends with, when the parent killed it on purpose (the hard time
        #: limit, a terminate).
        self.killed_with: TimeLimitExceeded | Terminated | None = None
        #: The id of the call it runs (for ``terminate``).
        self.task_id: str | None = None

    @property
    def usable(self) -> bool:
        return self.ready.done() and not self.exited.done() and not self.retiring


def child_exception(payload: BaseException | _child.ExceptionInfo) -> BaseException:
    """The exception a child sent, rebuilt from its description if it was not picklable."""
    if isinstance(payload, BaseException):
        return payload
    encoded = {
        "exc_type": payload.qualname,
        "exc_module": payload.module,
        "exc_message": list(payload.args),
    }
    return rebuild_exception(encoded, None, skip_init=True)


class ProcessPool(ExecutionPool):
    """``size`` child processes running plain-function tasks (see the module docstring).

    Args:
        size: Children (tasks running at once in this pool).
        app_path: ``module:attribute`` of the app, imported by each child.
        max_tasks_per_child: Replace a child after this many tasks.
        max_memory_per_child: Replace a child whose resident memory passed this (KiB).
    """

    name = "processes"

    def __init__(
        self,
        size: int,
        *,
        app_path: str,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
    ) -> None:
        self.size = size
        self.app_path = app_path
        self.max_tasks_per_child = max_tasks_per_child
        self.max_memory_per_child = max_memory_per_child
        self._context = multiprocessing.get_context("spawn")
        self._children: set[_Child] = set()
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._closing = False
        self._failures = 0
        #: Children started so far (replacements included).
        self.started = 0

    # -- children ------------------------------------------------------------------------------

    def _spawn(self) -> _Child:
        loop = asyncio.get_running_loop()
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_child.main,
            args=(self.app_path, child_conn, os.getpid(), amqptasks_logging.configured()),
            name=f"amqptasks-child-{self.started + 1}",
        )
        process.start()
        child_conn.close()  # the child has its copy; ours would hide its end-of-file
        self.started += 1
        child = _Child(process, parent_conn, loop)
        self._children.add(child)
        loop.add_reader(parent_conn.fileno(), self._on_readable, child)
        loop.add_reader(process.sentinel, self._on_exit, child)
        return child

    def _replace(self) -> None:
        """Start a child in place of one that left (unless the pool is closing)."""
        if self._closing:
            return
        try:
            self._spawn()
        except OSError as exc:
            self._retry_later(f"cannot start a pool process: {exc}")

    def _retry_later(self, error: str) -> None:
        delay = RESTART_BACKOFF[min(self._failures, len(RESTART_BACKOFF) - 1)]
        self._failures += 1
        log.error("pool process failed to start; trying again", error=error, retry_in=delay)
        asyncio.get_running_loop().call_later(delay, self._replace)

    def _on_readable(self, child: _Child) -> None:
        try:
            while child.conn.poll():
                self._on_message(child, pickle.loads(child.conn.recv_bytes()))
        except (EOFError, OSError, pickle.UnpicklingError):
            # The child is gone (or died mid-message); its sentinel tells the rest.
            asyncio.get_running_loop().remove_reader(child.conn.fileno())

    def _on_message(self, child: _Child, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            child.pid = int(message[1])
            self._failures = 0
            if not child.ready.done():
                child.ready.set_result(None)
            if self._closing:
                self._stop(child)
            else:
                self._idle.put_nowait(child)
        elif kind == "failed":
            if not child.ready.done():
                child.ready.set_exception(
                    ConfigError(
                        f"a pool process could not load the app {self.app_path}: {message[1]}"
                    )
                )
        elif kind == "done":
            _, status, payload, trace, rss = message
            if status == "ok":
                outcome = Outcome.success(payload)
            else:
                exc = child_exception(payload)
                outcome = Outcome(states.FAILURE, exception=exc, traceback=trace)
            job, child.job = child.job, None
            child.tasks += 1
            if job is not None and not job.done():
                job.set_result(outcome)
            self._after_task(child, rss)

    def _after_task(self, child: _Child, rss: int) -> None:
        reason = None
        if self.max_tasks_per_child and child.tasks >= self.max_tasks_per_child:
            reason = "max-tasks-per-child"
        elif self.max_memory_per_child and rss > self.max_memory_per_child:
            reason = "max-memory-per-child"
        if reason is None:
            if not self._closing:
                self._idle.put_nowait(child)
            return
        log.info(
            "replacing a pool process",
            reason=reason,
            pid=child.pid,
            tasks=child.tasks,
            resident_kib=rss,
        )
        self._stop(child)
        self._replace()

    def _stop(self, child: _Child) -> None:
        """Tell an idle child to exit."""
        child.retiring = True
        with contextlib.suppress(OSError):
            child.conn.send_bytes(pickle.dumps(None))

    def _on_exit(self, child: _Child, attempt: int = 0) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(child.process.sentinel)
        child.process.join(0)
        if child.process.exitcode is None and attempt < 50:
            # The sentinel fires as the child closes its files, a moment before the
            # kernel lets us reap it: look again shortly rather than block the loop.
            loop.call_later(0.01, self._on_exit, child, attempt + 1)
            return
        with contextlib.suppress(EOFError, OSError, pickle.UnpicklingError):
            while child.conn.poll():  # what it said before it went
                self._on_message(child, pickle.loads(child.conn.recv_bytes()))
        loop.remove_reader(child.conn.fileno())
        child.conn.close()
        self._children.discard(child)
        code = child.process.exitcode
        if code is not None:
            child.process.close()  # its sentinel file descriptor, now
        if not child.ready.done():
            child.ready.set_exception(
                ConfigError(
                    f"a pool process exited with {_describe_exit(code)} before it was ready"
                )
            )
        job, child.job = child.job, None
        if job is not None and not job.done():
            if child.killed_with is not None:
                job.set_result(Outcome.failure(child.killed_with))
            else:
                log.error(
                    "a pool process died while running a task",
                    pid=child.pid,
                    exit=_describe_exit(code),
                )
                job.set_result(
                    Outcome.failure(
                        WorkerLost(f"pool process {child.pid} died ({_describe_exit(code)})")
                    )
                )
        elif not child.retiring and not self._closing:
            log.error("an idle pool process died", pid=child.pid, exit=_describe_exit(code))
        if not child.exited.done():
            child.exited.set_result(None)
        if not child.retiring:
            if child.ready.done() and child.ready.exception() is None:
                self._replace()
            elif not self._closing:
                self._retry_later(str(child.ready.exception()))

    # -- the pool ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the children and wait until each has imported the app.

        Raises:
            ConfigError: a child could not import the app (the error says why).
        """
        children = [self._spawn() for _ in range(self.size)]
        try:
            await asyncio.wait_for(
                asyncio.gather(*(c.ready for c in children)), timeout=START_TIMEOUT
            )
        except asyncio.TimeoutError:
            raise ConfigError(
                f"pool processes did not load the app {self.app_path} within {START_TIMEOUT:g}s"
            ) from None

    async def run(
        self,
        task: Task[Any, Any],
        request: Request,
        limits: TimeLimits,
        on_start: Callable[[], None] | None = None,
        record: StartRecord | None = None,
    ) -> Outcome:
        """Run ``task`` in an idle child; kill the child at the hard time limit."""
        while True:
            child = await self._idle.get()
            if child.usable and child.job is None:
                break
        if record is not None:
            record.started_at = time.time()
        if on_start is not None:
            on_start()
        loop = asyncio.get_running_loop()
        job: asyncio.Future[Outcome] = loop.create_future()
        try:
            data = pickle.dumps(("run", task.name, request, limits.soft))
        except Exception as exc:
            self._idle.put_nowait(child)
            return Outcome.failure(TypeError(f"cannot send {task.name} to a pool process: {exc}"))
        child.job = job
        child.task_id = request.id
        child.killed_with = None
        with contextlib.suppress(OSError):  # it died: its sentinel resolves the job
            child.conn.send_bytes(data)
        timer = (
            loop.call_later(limits.hard, self._hard_limit, child, job, request, limits.hard)
            if limits.hard is not None
            else None
        )
        try:
            return await job
        finally:
            if timer is not None:
                timer.cancel()

    def terminate(self, task_id: str, signum: int) -> bool:
        """Signal the child running ``task_id`` (its call then ends as :class:`Terminated`).

        Children ignore SIGTERM, SIGINT and SIGQUIT (those stop the worker, which stops
        its children itself): asked for one of them, the child is sent SIGKILL.
        """
        ignored = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
        sent = signal.SIGKILL if signum in ignored else signum
        for child in self._children:
            job = child.job
            if job is not None and not job.done() and child.task_id == task_id:
                log.warning("terminating a running task", task_id=task_id, pid=child.pid)
                child.killed_with = Terminated(signum)
                with contextlib.suppress(OSError):
                    os.kill(child.pid, sent)
                return True
        return False

    def _hard_limit(
        self, child: _Child, job: asyncio.Future[Outcome], request: Request, hard: float
    ) -> None:
        if job.done() or child.job is not job:
            return
        child.killed_with = TimeLimitExceeded(
            f"task {request.task} ({request.id}) exceeded its hard time limit of {hard:g}s"
        )
        log.error(
            "task passed its hard time limit; killing its pool process",
            task_id=request.id,
            pid=child.pid,
            time_limit=hard,
        )
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGKILL)

    async def close(self, *, cold: bool = False) -> None:
        """Stop the children: idle ones are told to exit, busy ones are killed."""
        self._closing = True
        children = list(self._children)
        for child in children:
            if child.job is None and child.ready.done():
                self._stop(child)
            else:
                with contextlib.suppress(OSError):
                    os.kill(child.pid, signal.SIGKILL)
        if not children:
            return
        _, late = await asyncio.wait([c.exited for c in children], timeout=EXIT_TIMEOUT)
        for child in children:
            if not child.exited.done():
                with contextlib.suppress(OSError):
                    os.kill(child.pid, signal.SIGKILL)
        if late:
            await asyncio.wait([c.exited for c in children], timeout=EXIT_TIMEOUT)

    @property
    def pids(self) -> list[int]:
        """Process ids of the live children."""
        return sorted(c.pid for c in self._children if not c.exited.done())

    def describe(self) -> str:
        extra = []
        if self.max_tasks_per_child:
            extra.append(f"max {self.max_tasks_per_child} tasks")
        if self.max_memory_per_child:
            extra.append(f"max {self.max_memory_per_child} KiB")
        suffix = f", {', '.join(extra)} per child" if extra else ""
        return f"processes ({self.size} children, spawn{suffix})"


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown status"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
