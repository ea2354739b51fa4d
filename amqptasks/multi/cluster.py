"""Start, stop and signal the detached workers of ``amqptasks multi`` (Celery multi's verbs).

Each worker is detached: a new session (no controlling terminal, not in the shell's
process group), stdin from ``/dev/null``, stdout and stderr appended to its log file,
so it outlives the ``multi`` command. The worker writes and removes its own pid file;
``multi`` finds it there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from amqptasks.multi.pidfile import alive, read_pid

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from amqptasks.multi.nodes import Node

#: Seconds ``start`` waits for a worker to write its pid file (import the app, check options).
START_TIMEOUT = 60.0
#: Seconds between two looks at a pid file or a process.
POLL_INTERVAL = 0.1
#: Seconds ``kill`` waits for a SIGKILLed process to go.
KILL_WAIT = 5.0


def _marker(node: Node) -> Path:
    """Beside the pid file: the pid that ``stop`` sent SIGTERM to (removed once it exited)."""
    return node.pidfile.with_name(node.pidfile.name + ".stopping")


def _stopping(node: Node) -> int | None:
    return read_pid(_marker(node))


def _last_line(node: Node) -> str:
    try:
        text = node.logfile.read_text(errors="replace")
    except OSError:
        return ""
    found = [line.strip() for line in text.splitlines() if line.strip()]
    return found[-1] if found else ""


@dataclass
class Cluster:
    """The nodes of one ``amqptasks multi`` command line.

    Args:
        nodes: The nodes, in command-line order.
        env: The environment of started workers.
        say: Where progress lines go (one call per line).
        start_timeout: Seconds to wait for the workers' pid files.
    """

    nodes: list[Node]
    env: Mapping[str, str]
    say: Callable[[str], None]
    start_timeout: float = START_TIMEOUT
    _poll: float = field(default=POLL_INTERVAL, repr=False)

    # ------------------------------------------------------------------ start

    def start(self) -> int:
        """Start every node that is not running, all at once; 1 if one failed, else 0."""
        self.say("> Starting nodes...")
        codes: list[int] = []
        spawned: list[tuple[Node, subprocess.Popen[bytes]]] = []
        for node in self.nodes:
            outcome = self._spawn(node)
            if isinstance(outcome, int):
                codes.append(outcome)
            else:
                spawned.append((node, outcome))
        deadline = time.monotonic() + self.start_timeout
        while spawned:
            for node, proc in list(spawned):
                code = self._started(node, proc)
                if code is not None:
                    codes.append(code)
                    spawned.remove((node, proc))
            if spawned:
                if time.monotonic() > deadline:
                    for node, proc in spawned:
                        self.say(
                            f"\t> {node.name}: FAILED: no pid file after "
                            f"{self.start_timeout:g}s (pid {proc.pid} left running) "
                            f"[log: {node.logfile}]"
                        )
                        codes.append(1)
                    break
                time.sleep(self._poll)
        return max(codes, default=0)

    def _spawn(self, node: Node) -> int | subprocess.Popen[bytes]:
        """The detached worker of ``node``, or the exit code if it needs none or failed."""
        pid = read_pid(node.pidfile)
        if pid is not None and alive(pid):
            self.say(f"\t> {node.name}: already running (pid {pid})")
            return 0
        if node.pidfile.exists():
            node.pidfile.unlink()
            self.say(f"\t> {node.name}: stale pid file {node.pidfile} removed")
        _marker(node).unlink(missing_ok=True)
        try:
            node.pidfile.parent.mkdir(parents=True, exist_ok=True)
            node.logfile.parent.mkdir(parents=True, exist_ok=True)
            log = node.logfile.open("ab")
        except OSError as exc:
            self.say(f"\t> {node.name}: FAILED: {exc}")
            return 1
        with log:
            return subprocess.Popen(
                node.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env),
                start_new_session=True,
                close_fds=True,
            )

    def _started(self, node: Node, proc: subprocess.Popen[bytes]) -> int | None:
        """0 once the worker wrote its pid file, 1 if it exited first, None meanwhile."""
        if read_pid(node.pidfile) == proc.pid:
            self.say(f"\t> {node.name}: OK (pid {proc.pid})")
            return 0
        code = proc.poll()
        if code is None:
            return None
        reason = _last_line(node)
        self.say(
            f"\t> {node.name}: FAILED (exit {code})"
            + (f": {reason}" if reason else "")
            + f" [log: {node.logfile}]"
        )
        return 1

    # ------------------------------------------------------------------ stop

    def _running(self) -> list[tuple[Node, int]]:
        """The running nodes with their pids; says which are down, removes stale pid files."""
        running = []
        for node in self.nodes:
            pid = read_pid(node.pidfile)
            if pid is None:
                _marker(node).unlink(missing_ok=True)
                self.say(f"> {node.name}: DOWN (not running: no pid file at {node.pidfile})")
            elif not alive(pid):
                node.pidfile.unlink(missing_ok=True)
                _marker(node).unlink(missing_ok=True)
                self.say(f"> {node.name}: DOWN (stale pid file removed: pid {pid} is not running)")
            else:
                running.append((node, pid))
        return running

    def _signal(self, running: list[tuple[Node, int]], signum: signal.Signals) -> None:
        for node, pid in running:
            if signum == signal.SIGTERM:
                # A second SIGTERM would be a cold shutdown: a node that an earlier
                # stop already asked to stop is only waited for.
                if _stopping(node) == pid:
                    self.say(f"\t> {node.name}: already stopping (pid {pid})")
                    continue
                with contextlib.suppress(OSError):
                    _marker(node).write_text(f"{pid}\n")
            self.say(f"\t> {node.name}: {signum.name.removeprefix('SIG')} -> {pid}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _wait(self, running: list[tuple[Node, int]], timeout: float | None = None) -> bool:
        """Wait until every process of ``running`` has exited; False on ``timeout``."""
        if not running:
            return True
        pids = ", ".join(str(pid) for _, pid in running)
        self.say(
            f"> Waiting for {len(running)} {'node' if len(running) == 1 else 'nodes'} -> {pids}..."
        )
        left = list(running)
        deadline = None if timeout is None else time.monotonic() + timeout
        while left:
            for node, pid in list(left):
                if not alive(pid):
                    left.remove((node, pid))
                    # A worker removes its pid file; one that was killed cannot.
                    if read_pid(node.pidfile) == pid:
                        node.pidfile.unlink(missing_ok=True)
                    _marker(node).unlink(missing_ok=True)
                    self.say(f"\t> {node.name}: OK")
            if left:
                if deadline is not None and time.monotonic() > deadline:
                    return False
                time.sleep(self._poll)
        return True

    def stop(self, *, wait: bool) -> int:
        """SIGTERM (warm shutdown) to every running node; with ``wait``, until they exited."""
        running = self._running()
        if running:
            self.say("> Stopping nodes...")
            self._signal(running, signal.SIGTERM)
            if wait:
                self._wait(running)
        return 0

    def restart(self) -> int:
        """``stopwait`` then ``start``: running tasks finish before the new workers start."""
        self.stop(wait=True)
        return self.start()

    def kill(self) -> int:
        """SIGKILL to every running node (running tasks are cut; their messages are redelivered)."""
        running = self._running()
        if running:
            self.say("> Killing nodes...")
            self._signal(running, signal.SIGKILL)
            if not self._wait(running, KILL_WAIT):
                self.say("> some nodes did not exit after SIGKILL")
                return 1
        return 0
