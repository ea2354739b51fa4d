"""Several worker processes under one supervisor (``amqptasks worker --workers N``).

One worker process does all its broker I/O on one asyncio loop, which saturates one
CPU core at a few thousand tasks per second. :class:`Supervisor` runs N worker
processes instead, each a complete worker (its own connection, loop and pool) started
from a command line, and does nothing with the broker itself:

- **Start**: the first process starts alone; the others start at once too but wait
  (before connecting) until the first one reported that it consumes. A wrong URL, a
  topology mismatch or a broker that refuses is therefore reported once, by the first
  process, and the supervisor exits with its exit code. Any process that exits with a
  non-zero code before it ever consumed is such a *start-up failure*: the supervisor
  stops the others and exits with that code, never restarting it.
- **Crashes**: a process that dies later (OOM killer, SIGKILL, a crash; or one that
  exits on its own) is logged and started again after a backoff (1 s, doubled up to
  30 s, back to 1 s once a process ran for a minute). A replacement that fails before
  it consumes is retried the same way (the broker may be down while the others
  reconnect).
- **Signals**: SIGTERM or SIGINT is forwarded to every process as SIGTERM (warm
  shutdown); a second one, or SIGQUIT, as SIGQUIT (cold). A supervised process takes
  any number of SIGTERMs as one warm shutdown (a service manager may signal every
  process of the service besides the supervisor's forward), and SIGQUIT as cold. The
  exit code is the worst of the processes' codes (see :func:`worst_exit_code`).
- Each process runs in its own session, so a Ctrl-C in a terminal (SIGINT to the whole
  foreground process group) reaches the supervisor only and is forwarded once.

The protocol with a process is two inherited pipe ends (:class:`ChildLaunch`): it
writes its pid to ``ready_fd`` once it consumes (:func:`notify_ready`), and, when
given a ``go_fd``, reads one byte from it before it connects (:func:`wait_for_go`).
Linux and macOS only (POSIX signals, ``select`` on pipes); main thread only.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from amqptasks.logging import get_logger
from amqptasks.worker.worker import EXIT_COLD, EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from types import FrameType

log = get_logger(__name__)

#: The node name of a worker given no ``-n`` (see ``expand_hostname``).
DEFAULT_HOSTNAME = "worker@%h"
#: Seconds before the first restart of a process that died, doubled per quick death.
RESTART_BACKOFF = 1.0
#: The longest wait before a restart.
RESTART_BACKOFF_MAX = 30.0
#: A process that ran this many seconds resets its slot's backoff when it dies.
STABLE_AFTER = 60.0
#: Signals the supervisor handles while it runs.
_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD)


def child_hostname(template: str | None, index: int, count: int) -> str | None:
    """The ``-n`` template of worker process ``index`` (1..``count``).

    ``%i`` becomes the index. Without ``%i``, and with more than one process, the
    index is appended to the name before ``@`` (``worker@%h`` -> ``worker-2@%h``) so
    that node names stay distinct. The other ``%`` codes are left for the process to
    expand (``%p`` is its own pid). None (the default name) stays None for one process.

    >>> child_hostname("mail@%h", 2, 4), child_hostname("mail-%i@%h", 2, 4)
    ('mail-2@%h', 'mail-2@%h')
    """
    if template is None:
        if count == 1:
            return None
        template = DEFAULT_HOSTNAME
    if "%i" in template:
        return template.replace("%i", str(index))
    if count == 1:
        return template
    name, at, host = template.partition("@")
    return f"{name}-{index}{at}{host}"


def worst_exit_code(codes: Iterable[int]) -> int:
    """The exit code of the supervisor, from its processes' (``Popen.returncode``).

    An error (1, 2 or any other positive code) is worse than a cold shutdown (3), which
    is worse than 0. A process killed by a signal (a negative code) counts as an error
    (1). No codes at all: 0.
    """

    def rank(code: int) -> tuple[int, int]:
        return (0 if code == EXIT_OK else 1 if code == EXIT_COLD else 2, code)

    normal = [EXIT_ERROR if code < 0 else code for code in codes]
    return max(normal, key=rank, default=EXIT_OK)


def describe_exit(code: int) -> dict[str, object]:
    """``{"exit_code": 1}`` or ``{"signal": "SIGKILL"}`` for a log line."""
    if code >= 0:
        return {"exit_code": code}
    try:
        return {"signal": signal.Signals(-code).name}
    except ValueError:
        return {"signal": -code}


@dataclass(frozen=True)
class ChildLaunch:
    """What a worker process is told about its place under the supervisor.

    Attributes:
        index: Its number, 1..N (a replacement keeps the number it replaces).
        ready_fd: Write end of the supervisor's pipe: write the pid there once consuming.
        go_fd: Read end of a pipe to read one byte from before connecting (None: go on).
    """

    index: int
    ready_fd: int
    go_fd: int | None = None

    def encode(self) -> str:
        """``INDEX:READY_FD[:GO_FD]``, for a command-line option."""
        parts = [self.index, self.ready_fd] + ([self.go_fd] if self.go_fd is not None else [])
        return ":".join(str(part) for part in parts)

    @classmethod
    def parse(cls, text: str) -> ChildLaunch:
        """The inverse of :meth:`encode`.

        Raises:
            ValueError: ``text`` is not ``INDEX:READY_FD[:GO_FD]``.
        """
        parts = text.split(":")
        if len(parts) not in (2, 3) or not all(part.isdigit() for part in parts):
            raise ValueError(f"expected INDEX:READY_FD[:GO_FD], got {text!r}")
        numbers = [int(part) for part in parts]
        return cls(numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else None)


def notify_ready(fd: int) -> None:
    """In a worker process: tell the supervisor that it consumes (once; closes ``fd``)."""
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as exc:  # the supervisor is gone: the orphan check stops the worker
        log.debug("could not tell the supervisor", error=str(exc))
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def wait_for_go(fd: int) -> bool:
    """In a worker process: wait for the supervisor's go; False if it is not coming."""
    try:
        got = os.read(fd, 1)
    except OSError:
        got = b""
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return got == b"g"


@dataclass
class _Slot:
    """Worker process number ``index`` and what the supervisor knows about it."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    #: The current process wrote its pid to the ready pipe.
    ready: bool = False
    #: Some process of this slot was ready once (a later failure is a crash).
    ever_ready: bool = False
    #: The signal the supervisor sent to the current process, if any.
    sent: int | None = None
    backoff: float = RESTART_BACKOFF
    restart_at: float | None = None
    #: The supervisor's view of the last process's exit code, once stopping.
    final: int | None = None


class Supervisor:
    """Starts ``count`` worker processes, restarts the ones that die, forwards signals.

    Args:
        count: Worker processes to run (at least 1).
        command: The command line of process ``launch.index``; it must pass ``launch``
            on to the process (which calls :func:`notify_ready` and, with a ``go_fd``,
            :func:`wait_for_go`).
        env: The processes' environment (default: the supervisor's).
        on_ready: Called once with ``[(index, pid), ...]`` when every process first
            reported that it consumes.
        backoff: Seconds before restarting a process that died, doubled for each death
            that follows quickly, up to ``max_backoff``.
        max_backoff: The longest wait before a restart.
        stable_after: Seconds after which a process's death resets the backoff.

    Example:
        >>> code = Supervisor(2, lambda launch: [...]).run()
    """

    def __init__(
        self,
        count: int,
        command: Callable[[ChildLaunch], Sequence[str]],
        *,
        env: Mapping[str, str] | None = None,
        on_ready: Callable[[list[tuple[int, int]]], None] | None = None,
        backoff: float = RESTART_BACKOFF,
        max_backoff: float = RESTART_BACKOFF_MAX,
        stable_after: float = STABLE_AFTER,
    ) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.count = count
        self._command = command
        self._env = dict(env) if env is not None else None
        self._on_ready = on_ready
        self._initial_backoff = backoff
        self._max_backoff = max_backoff
        self._stable_after = stable_after
        self._slots = [_Slot(index, backoff=backoff) for index in range(1, count + 1)]
        self._pending: list[int] = []
        self._stopping = False
        self._stop_requests = 0
        self._sent_warm = False
        self._sent_cold = False
        self._announced = False
        #: The exit code of a process that failed at start-up (the supervisor's code).
        self._failed: int | None = None
        self._ready_buffer = b""
        self._ready_r = self._ready_w = self._wake_r = self._wake_w = -1
        self._go_w: int | None = None

    @property
    def pids(self) -> list[int]:
        """Pids of the worker processes running now."""
        return [slot.proc.pid for slot in self._slots if slot.proc is not None]

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        """Run the processes until they all stopped; return the supervisor's exit code."""
        self._ready_r, self._ready_w = os.pipe()
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._ready_r, self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in _HANDLED}
        previous_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        try:
            self._start_all()
            while True:
                self._handle_signals()
                self._read_ready()
                self._reap()
                if self._stopping and not self.pids:
                    break
                self._restart_due()
                self._announce()
                self._wait()
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._close_go()
            for slot in self._slots:  # only after an unexpected error
                if slot.proc is not None and slot.proc.poll() is None:
                    slot.proc.send_signal(signal.SIGTERM)
            for fd in (self._ready_r, self._ready_w, self._wake_r, self._wake_w):
                os.close(fd)
        if self._failed is not None:
            return self._failed
        return worst_exit_code(slot.final for slot in self._slots if slot.final is not None)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._pending.append(signum)  # handled by the loop; the wakeup fd wakes it

    def _start_all(self) -> None:
        go_r: int | None = None
        if self.count > 1:
            go_r, self._go_w = os.pipe()
        try:
            for slot in self._slots:
                self._spawn(slot, go_fd=None if slot.index == 1 else go_r)
        finally:
            if go_r is not None:
                os.close(go_r)
        log.info("worker processes started", count=self.count, pids=self.pids)

    def _spawn(self, slot: _Slot, *, go_fd: int | None = None) -> None:
        launch = ChildLaunch(slot.index, self._ready_w, go_fd)
        fds = (self._ready_w,) if go_fd is None else (self._ready_w, go_fd)
        slot.proc = subprocess.Popen(
            list(self._command(launch)),
            env=self._env,
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            # Its own session: a terminal's Ctrl-C (SIGINT to the foreground process
            # group) reaches the supervisor only, which forwards it once.
            start_new_session=True,
        )
        slot.started = time.monotonic()
        slot.ready = False
        slot.sent = None
        slot.restart_at = None

    def _wait(self) -> None:
        timeout = 1.0
        due = [slot.restart_at for slot in self._slots if slot.restart_at is not None]
        if due:
            timeout = max(0.0, min(timeout, min(due) - time.monotonic()))
        if self._pending:
            timeout = 0.0
        select.select([self._wake_r, self._ready_r], [], [], timeout)
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    # -- signals -------------------------------------------------------------------------------

    def _handle_signals(self) -> None:
        pending, self._pending = self._pending, []
        for signum in pending:
            if signum in (signal.SIGTERM, signal.SIGINT):
                self._stop_requests += 1
                self.stop(cold=self._stop_requests > 1)
            elif signum == signal.SIGQUIT:
                self.stop(cold=True)

    def stop(self, *, cold: bool = False) -> None:
        """Stop every process: warm (SIGTERM, they finish running tasks) or cold (SIGQUIT)."""
        if not self._stopping:
            self._stopping = True
            self._close_go()  # processes still waiting to connect exit quietly
            for slot in self._slots:
                slot.restart_at = None
        if cold:
            if self._sent_cold:
                return
            self._sent_cold = True
            signum = signal.SIGQUIT
            log.warning("cold shutdown of the worker processes", pids=self.pids)
        else:
            if self._sent_warm or self._sent_cold:
                return
            self._sent_warm = True
            signum = signal.SIGTERM
            log.info("warm shutdown of the worker processes", pids=self.pids)
        for slot in self._slots:
            if slot.proc is not None and slot.proc.poll() is None:
                try:
                    slot.proc.send_signal(signum)
                except ProcessLookupError:
                    continue
                slot.sent = signum

    def _close_go(self) -> None:
        if self._go_w is not None:
            os.close(self._go_w)
            self._go_w = None

    # -- processes -----------------------------------------------------------------------------

    def _read_ready(self) -> None:
        try:
            while chunk := os.read(self._ready_r, 4096):
                self._ready_buffer += chunk
        except BlockingIOError:
            pass
        *lines, self._ready_buffer = self._ready_buffer.split(b"\n")
        for line in lines:
            pid = int(line) if line.strip().isdigit() else None
            slot = next((s for s in self._slots if s.proc is not None and s.proc.pid == pid), None)
            if slot is None:
                continue
            slot.ready = True
            if slot.ever_ready:
                log.info("worker process ready again", index=slot.index, pid=pid)
            slot.ever_ready = True
            if slot.index == 1 and self._go_w is not None and not self._stopping:
                # The first process connected and consumes: the others may connect.
                os.write(self._go_w, b"g" * (self.count - 1))
                self._close_go()

    def _reap(self) -> None:
        for slot in self._slots:
            if slot.proc is not None and (code := slot.proc.poll()) is not None:
                self._exited(slot, code)

    def _exited(self, slot: _Slot, code: int) -> None:
        assert slot.proc is not None
        pid = slot.proc.pid
        ran = time.monotonic() - slot.started
        slot.proc = None
        how = describe_exit(code)
        if self._stopping:
            slot.final = self._final_code(slot, code)
            log.info("worker process stopped", index=slot.index, pid=pid, **how)
            return
        if code > 0 and not slot.ever_ready:
            # Its own error message says why (bad URL, topology mismatch...); running
            # it again would fail the same way.
            log.info(
                "worker process failed at start-up; stopping", index=slot.index, pid=pid, **how
            )
            self._failed = code
            self.stop()
            return
        if ran >= self._stable_after:
            slot.backoff = self._initial_backoff
        delay = slot.backoff
        slot.backoff = min(delay * 2, self._max_backoff)
        slot.restart_at = time.monotonic() + delay
        report = log.warning if code == EXIT_OK else log.error
        report(
            "worker process died; restarting it"
            if code
            else "worker process exited; restarting it",
            index=slot.index,
            pid=pid,
            ran_for=round(ran, 1),
            restart_in=delay,
            ready=slot.ready,
            **how,
        )

    @staticmethod
    def _final_code(slot: _Slot, code: int) -> int:
        if code < 0 and slot.sent is not None and -code == slot.sent:
            # Killed by the stop signal before it could handle it (still starting, so
            # nothing of it was running): a clean stop; just after it consumed: cold.
            return EXIT_COLD if slot.ready else EXIT_OK
        return code

    def _restart_due(self) -> None:
        if self._stopping:
            return
        now = time.monotonic()
        for slot in self._slots:
            if slot.proc is None and slot.restart_at is not None and slot.restart_at <= now:
                self._spawn(slot)
                assert slot.proc is not None
                log.info("worker process restarted", index=slot.index, pid=slot.proc.pid)

    def _announce(self) -> None:
        if self._announced or self._stopping:
            return
        if all(slot.ready for slot in self._slots):
            self._announced = True
            running = [(slot.index, slot.proc.pid) for slot in self._slots if slot.proc]
            log.info("worker processes ready", pids=[pid for _, pid in running])
            if self._on_ready is not None:
                self._on_ready(running)
