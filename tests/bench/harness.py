"""Plumbing for the benchmark runner: broker admin, processes, counters, statistics.

Every child process (worker, consumer, client) is started in its own session so
that it and all its children can be stopped as a group, is bounded by a
timeout, and is remembered in :data:`LIVE` so that :func:`stop_all` can end it
whatever went wrong.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions
import psutil

from tests.bench.client import MARKER

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


def app_path(pool: str) -> str:
    """``-A`` of an amqptasks worker with ``pool`` (see ``peer_amqptasks.async_app``)."""
    return f"tests.bench.peer_amqptasks:{'async_app' if pool == 'asyncio' else 'app'}"


class BenchError(RuntimeError):
    """A measurement could not be made (timeout, crash, wrong count...)."""


# -- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


# -- broker admin -----------------------------------------------------------------------------


class Admin:
    """A pika ``BlockingConnection`` for queue bookkeeping (never timed)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: Any = None
        self._channel: Any = None

    def _ch(self) -> Any:
        if self._connection is None or not self._connection.is_open:
            self._connection = pika.BlockingConnection(pika.URLParameters(self.url))
            self._channel = None
        if self._channel is None or not self._channel.is_open:
            self._channel = self._connection.channel()
        return self._channel

    def count(self, queue: str) -> int | None:
        """Ready messages in ``queue`` (passive declare), None if it does not exist."""
        try:
            return int(self._ch().queue_declare(queue, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker:
            self._channel = None
            return None

    def delete_queues(self, *queues: str) -> None:
        for queue in queues:
            self._ch().queue_delete(queue)

    def delete_exchange(self, exchange: str) -> None:
        try:
            self._ch().exchange_delete(exchange)
        except pika.exceptions.ChannelClosedByBroker:
            self._channel = None

    def close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None


# -- processes --------------------------------------------------------------------------------

#: Every child still running; :func:`stop_all` ends them.
LIVE: set[Proc] = set()


class Proc:
    """A child process in its own session, its output in ``log``."""

    def __init__(
        self, argv: list[str], env: dict[str, str], log: Path, name: str, grace: float = 20.0
    ) -> None:
        self.name = name
        self.grace = grace
        self.log = log
        self._log_handle = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        LIVE.add(self)
        self._ps = psutil.Process(self.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")

    def tree(self) -> list[psutil.Process]:
        try:
            return [self._ps, *self._ps.children(recursive=True)]
        except psutil.Error:
            return []

    def rss_mb(self) -> float:
        """Resident set of the process and all its children, MiB."""
        total = 0
        for process in self.tree():
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total / 2**20

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the process tree."""
        return sum(_cpu_seconds(process) for process in self.tree())

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM (warm shutdown), then SIGKILL to the whole group after ``timeout``
        seconds (default: :attr:`grace`)."""
        members = self.tree()
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(self.grace if timeout is None else timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        for process in members:
            with contextlib.suppress(psutil.Error):
                process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        self._log_handle.close()
        LIVE.discard(self)


def stop_all() -> None:
    for proc in list(LIVE):
        with contextlib.suppress(Exception):
            proc.stop(timeout=5)


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.02,
    proc: Proc | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None:
            proc.check()
        if time.monotonic() > deadline:
            tail = f"\n{proc.name} log:\n{proc.log_tail()}" if proc is not None else ""
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")
        time.sleep(interval)


def run_client(
    peer: str, command: str, kwargs: dict[str, Any], env: dict[str, str], timeout: float
) -> dict[str, Any]:
    """Run ``python -m tests.bench.client`` to completion and return its figures."""
    argv = [PY, "-m", "tests.bench.client", peer, command, json.dumps(kwargs)]
    try:
        done = subprocess.run(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{peer} {command} timed out after {timeout:.0f}s") from exc
    return _parse_client(peer, command, done.returncode, done.stdout, done.stderr)


def _parse_client(peer: str, command: str, code: int, out: str, err: str) -> dict[str, Any]:
    for line in out.splitlines():
        if line.startswith(MARKER):
            result: dict[str, Any] = json.loads(line[len(MARKER) :])
            return result
    tail = "\n".join((err or out).strip().splitlines()[-15:])
    raise BenchError(f"{peer} {command} failed (exit {code}):\n{tail}")


class Client:
    """A client command running concurrently with the harness (end to end)."""

    def __init__(
        self, peer: str, command: str, kwargs: dict[str, Any], env: dict[str, str], log: Path
    ) -> None:
        self.peer = peer
        self.command = command
        argv = [PY, "-m", "tests.bench.client", peer, command, json.dumps(kwargs)]
        self.proc = Proc(argv, env, log, f"{peer} {command}")

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            self.proc.popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.proc.stop(timeout=2)
            raise BenchError(f"{self.peer} {self.command} timed out") from exc
        code = self.proc.popen.returncode
        self.proc.stop(timeout=1)
        text = self.proc.log.read_text(errors="replace")
        return _parse_client(self.peer, self.command, code, text, text)


# -- completion counter -----------------------------------------------------------------------


def count_file(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def wait_count(
    path: Path,
    target: int,
    timeout: float,
    proc: Proc,
    others: Sequence[Proc] = (),
    interval: float = 0.001,
    broker_pid: int | None = None,
) -> dict[str, float]:
    """Poll the completion counter until it reaches ``target``.

    Returns ``t_first``/``c_first`` (first time the count was seen above zero, and
    the count then), ``t_last`` (first time it reached ``target``), and the
    worker tree's CPU seconds between the two (``cpu_s``); with ``broker_pid``, the
    broker VM's CPU seconds over the same span as well (``broker_cpu_s``).
    """
    deadline = time.monotonic() + timeout
    t_first = c_first = None
    cpu_first = broker_first = 0.0
    spins = 0
    while True:
        now = time.monotonic()
        count = count_file(path)
        if t_first is None and count > 0:
            t_first, c_first = now, count
            cpu_first = proc.cpu_seconds()
            broker_first = process_cpu_seconds(broker_pid)
        if count >= target:
            assert t_first is not None and c_first is not None
            return {
                "t_first": t_first,
                "c_first": float(c_first),
                "t_last": now,
                "count": float(count),
                "cpu_s": proc.cpu_seconds() - cpu_first,
                "broker_cpu_s": process_cpu_seconds(broker_pid) - broker_first,
            }
        spins += 1
        if spins % 100 == 0:
            proc.check()
            for other in others:
                if not other.alive() and other.popen.returncode not in (0, None):
                    raise BenchError(f"{other.name} failed:\n{other.log_tail()}")
            if now > deadline:
                raise BenchError(
                    f"timed out after {timeout:.0f}s: {count}/{target} tasks done\n"
                    f"{proc.name} log:\n{proc.log_tail()}"
                )
        time.sleep(interval)


def process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of one process (0.0 for None or a process gone)."""
    if pid is None:
        return 0.0
    try:
        return _cpu_seconds(psutil.Process(pid))
    except psutil.Error:
        return 0.0


def _cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds of ``process`` (0.0 once it is gone)."""
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def read_lateness(path: Path, run: str) -> list[float]:
    """Lateness in ms of each delayed task of ``run`` recorded so far."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    late = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == run:
            late.append((float(parts[2]) - float(parts[1])) * 1000)
    return late


def ready_lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
