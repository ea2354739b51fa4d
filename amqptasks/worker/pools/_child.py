"""The main function of a ``processes`` pool child (runs in the child process).

A child imports the app by its path, says ``ready``, then runs one call at a
time for its parent over a pipe. It never talks to the broker for the worker
(a task that sends tasks opens the app's own producer connection). Messages
are pickled tuples:

    parent -> child   ("run", task name, Request, soft limit or None) | None (exit)
    child -> parent   ("ready", pid) | ("failed", error text)
                      ("done", "ok", value, None, rss KiB)
                      ("done", "error", exception or ExceptionInfo, traceback, rss KiB)

The soft time limit is a ``SIGALRM`` timer in the child, so it interrupts even
``time.sleep`` and most blocking system calls; the hard limit is the parent
killing the child.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys
import traceback as tb
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import SoftTimeLimitExceeded
from amqptasks.worker.pools.base import call_task

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from amqptasks.app import App
    from amqptasks.request import Request

#: Linux prctl option: signal to receive when the parent dies.
_PR_SET_PDEATHSIG = 1

_soft_armed = False


@dataclass(frozen=True)
class ExceptionInfo:
    """An exception that could not be pickled, described well enough to rebuild it."""

    module: str
    qualname: str
    args: tuple[Any, ...]


def resident_kib() -> int:
    """This process's resident set size in KiB (``VmRSS``; peak RSS where /proc is absent)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this child when the worker dies, so no task runs orphaned."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _on_alarm(_signum: int, _frame: object) -> None:
    if _soft_armed:
        raise SoftTimeLimitExceeded()


def _portable(exc: BaseException) -> BaseException | ExceptionInfo:
    """``exc`` if it survives pickling, else a description the parent rebuilds."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        args = tuple(
            a if isinstance(a, str | int | float | bool | type(None)) else repr(a) for a in exc.args
        )
        return ExceptionInfo(type(exc).__module__, type(exc).__qualname__, args)
    return exc


def _run(app: App, name: str, request: Request, soft: float | None) -> tuple[Any, ...]:
    """Run one call; return ``(kind, value or exception, traceback)``."""
    global _soft_armed
    result: tuple[Any, ...] | None = None
    try:
        try:
            task = app.tasks.find(name)
            if task is None:
                raise app.tasks.unknown(name)
            if soft is not None:
                _soft_armed = True
                signal.setitimer(signal.ITIMER_REAL, soft)
            try:
                value = call_task(task, request)
            finally:
                _soft_armed = False
                signal.setitimer(signal.ITIMER_REAL, 0)
            result = ("ok", value, None)
        except BaseException as exc:
            result = ("error", exc, tb.format_exc())
    except SoftTimeLimitExceeded as exc:  # the alarm landed just after the call
        _soft_armed = False
        if result is None:
            result = ("error", exc, tb.format_exc())
    return result


def _encode(name: str, result: tuple[Any, ...]) -> bytes:
    kind, payload, trace = result
    rss = resident_kib()
    if kind == "ok":
        try:
            return pickle.dumps(("done", "ok", payload, None, rss))
        except Exception as exc:
            payload = TypeError(f"the result of {name} cannot be sent to the worker: {exc}")
            trace = None
    return pickle.dumps(("done", "error", _portable(payload), trace, rss))


def main(app_path: str, conn: Connection, parent_pid: int, logging: tuple[int, str] | None) -> None:
    """Serve calls from the parent until it says stop or goes away."""
    _die_with_parent(parent_pid)
    # The worker (parent) decides about shutdowns; a terminal's Ctrl-C or a
    # service manager's SIGTERM to the whole process group must not kill tasks.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, _on_alarm)
    if logging is not None:
        from amqptasks.logging import configure_logging

        configure_logging(logging[0], "json" if logging[1] == "json" else "console")
    try:
        from amqptasks._appref import import_app

        app = import_app(app_path)
    except BaseException as exc:
        conn.send_bytes(pickle.dumps(("failed", f"{type(exc).__name__}: {exc}")))
        return
    conn.send_bytes(pickle.dumps(("ready", os.getpid())))
    try:
        while True:
            try:
                message = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                return  # the parent is gone
            if message is None:
                return
            _kind, name, request, soft = message
            conn.send_bytes(_encode(name, _run(app, name, request, soft)))
    finally:
        app.close()
