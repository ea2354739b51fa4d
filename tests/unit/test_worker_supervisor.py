"""``amqptasks worker --workers N``: the supervisor's pure parts, and its process handling
with stand-in worker processes (small scripts that speak the supervisor's pipe protocol;
no broker)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

from amqptasks import App, ConfigError
from amqptasks.cli.worker import child_options, worker
from amqptasks.worker.supervisor import (
    ChildLaunch,
    Supervisor,
    child_hostname,
    describe_exit,
    worst_exit_code,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import click

# -- node names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "index", "count", "expected"),
    [
        (None, 1, 1, None),  # one worker: the default name, untouched
        ("mail@%h", 1, 1, "mail@%h"),
        ("mail-%i@%h", 1, 1, "mail-1@%h"),  # %i is 1 for a worker on its own
        (None, 2, 3, "worker-2@%h"),
        ("mail@%h", 3, 3, "mail-3@%h"),
        ("mail@%h.%d", 1, 2, "mail-1@%h.%d"),
        ("mail", 2, 2, "mail-2"),  # no @: appended to the whole name
        ("w%i@%h", 2, 2, "w2@%h"),  # %i where the user wants it, nothing appended
        ("%n-%i@%h-%i", 4, 4, "%n-4@%h-4"),
        ("worker@%h-%p", 2, 2, "worker-2@%h-%p"),  # %p is left for the process
    ],
)
def test_child_hostname(template: str | None, index: int, count: int, expected: str) -> None:
    assert child_hostname(template, index, count) == expected


def test_child_hostnames_are_distinct() -> None:
    for template in (None, "w@%h", "w%i@%h", "plain"):
        names = {child_hostname(template, i, 8) for i in range(1, 9)}
        assert len(names) == 8, template


# -- exit codes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([], 0),
        ([0, 0], 0),
        ([0, 3], 3),  # a cold shutdown left tasks unfinished
        ([3, 1], 1),  # an error is worse than a cold shutdown
        ([1, 2, 0], 2),
        ([0, -signal.SIGKILL], 1),  # killed by a signal: an error
        ([3, -signal.SIGSEGV], 1),
    ],
)
def test_worst_exit_code(codes: list[int], expected: int) -> None:
    assert worst_exit_code(codes) == expected


def test_describe_exit_names_the_signal() -> None:
    assert describe_exit(1) == {"exit_code": 1}
    assert describe_exit(-signal.SIGKILL) == {"signal": "SIGKILL"}


# -- the launch option --------------------------------------------------------------------------


def test_child_launch_round_trips() -> None:
    for launch in (ChildLaunch(1, 4), ChildLaunch(3, 5, 8)):
        assert ChildLaunch.parse(launch.encode()) == launch
    assert ChildLaunch(2, 4, 7).encode() == "2:4:7"
    for bad in ("", "1", "a:b", "1:2:3:4", "-1:2"):
        with pytest.raises(ValueError, match="INDEX:READY_FD"):
            ChildLaunch.parse(bad)


# -- the command line of a worker process -------------------------------------------------------


def _parse(argv: list[str]) -> click.Context:
    return worker.make_context("worker", list(argv))


def test_worker_processes_get_the_supervisors_options_but_not_its_own() -> None:
    argv = [
        "-A",
        "proj:app",
        "--broker-url",
        "amqp://u:secret@host//",
        "-l",
        "INFO",
        "--log-format",
        "json",
        "-Q",
        "a,b",
        "-X",
        "b",
        "-c",
        "3",
        "-P",
        "processes",
        "-n",
        "mail@%h",
        "--prefetch-multiplier",
        "2",
        "--shutdown-timeout",
        "12.5",
        "--max-tasks-per-child",
        "100",
        "--max-memory-per-child",
        "200000",
        "--time-limit",
        "60",
        "--soft-time-limit",
        "50.5",
        "--logfile",
        "w.log",
        "--pidfile",
        "w.pid",
        "--workers",
        "4",
    ]
    given = _parse(argv).params
    options = child_options(_parse(argv))
    # The broker URL travels in AMQPTASKS_BROKER_URL (not visible in ps), the node name
    # is given per process, the pidfile is the supervisor's, and a process is one worker.
    assert "secret" not in " ".join(options)
    for flag in ("--broker-url", "--hostname", "-n", "--pidfile", "--workers", "--supervised"):
        assert flag not in options
    again = _parse(options).params
    for name, value in given.items():
        if name in ("broker_url", "hostname", "pidfile", "workers"):
            assert again[name] is None
        else:
            assert again[name] == value, name


def test_options_left_to_settings_stay_unset() -> None:
    # AMQPTASKS_WORKER_CONCURRENCY & co. reach a process through its environment.
    assert child_options(_parse(["-A", "proj:app"])) == [
        "--app",
        "proj:app",
        "--loglevel",
        "warning",
        "--log-format",
        "console",
    ]


def test_worker_processes_setting() -> None:
    assert App("t").settings.worker_processes == 1
    assert App("t", worker_processes=4).settings.worker_processes == 4
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="worker_processes"):
            App("t", worker_processes=bad)


def test_worker_processes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQPTASKS_WORKER_PROCESSES", "3")
    assert App("t").settings.worker_processes == 3


# -- the supervisor, with stand-in worker processes ---------------------------------------------

# A worker process as the supervisor sees one: waits for the go (when given one),
# records "index pid" in the ledger, reports ready, serves until a signal. MODE makes
# process 1 or 2 misbehave: fail-N (exit 4 before ready), error-N (exit 1 on SIGTERM),
# linger (SIGTERM only starts a "warm shutdown" that never ends; SIGQUIT exits 3).
CHILD = r"""
import os, signal, sys, time
mode, spec, ledger = sys.argv[1:4]
parts = [int(p) for p in spec.split(":")]
index, ready_fd = parts[0], parts[1]
if len(parts) == 3 and os.read(parts[2], 1) != b"g":
    sys.exit(0)
if mode == f"fail-{index}":
    sys.exit(4)

def term(signum, frame):
    if mode != "linger":
        sys.exit(1 if mode == f"error-{index}" else 0)

signal.signal(signal.SIGTERM, term)
signal.signal(signal.SIGQUIT, lambda signum, frame: os._exit(3))
with open(ledger, "a") as out:
    out.write(f"{index} {os.getpid()}\n")
os.write(ready_fd, f"{os.getpid()}\n".encode())
os.close(ready_fd)
while True:
    time.sleep(0.05)
"""


class Harness:
    """Runs a :class:`Supervisor` of stand-in processes in the test's main thread."""

    def __init__(self, tmp_path: Path, count: int = 2, mode: str = "serve", **kwargs: float):
        self.ledger = tmp_path / "ledger"
        self.launches: list[ChildLaunch] = []
        self.announced: list[tuple[int, int]] = []
        self.supervisor = Supervisor(
            count,
            self.command(mode),
            on_ready=self.announced.extend,
            backoff=kwargs.get("backoff", 0.05),
            stable_after=kwargs.get("stable_after", 60.0),
        )

    def command(self, mode: str) -> Callable[[ChildLaunch], list[str]]:
        def build(launch: ChildLaunch) -> list[str]:
            self.launches.append(launch)
            return [sys.executable, "-c", CHILD, mode, launch.encode(), str(self.ledger)]

        return build

    def ready(self) -> list[tuple[int, int]]:
        if not self.ledger.exists():
            return []
        return [
            (int(index), int(pid))
            for index, pid in (line.split() for line in self.ledger.read_text().splitlines())
        ]

    def in_background(self, action: Callable[[], None]) -> threading.Thread:
        """Run ``action`` in a thread while the supervisor runs (it sends the signals)."""
        thread = threading.Thread(target=action, daemon=True)
        thread.start()
        return thread

    def wait_for(self, predicate: Callable[[], object], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("timed out")
            time.sleep(0.02)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _term_supervisor() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # handled by the running supervisor


def test_runs_n_processes_and_sigterm_stops_them_warm(tmp_path: Path) -> None:
    h = Harness(tmp_path, count=3)

    def stop_when_ready() -> None:
        h.wait_for(lambda: len(h.announced) == 3)
        _term_supervisor()

    thread = h.in_background(stop_when_ready)
    assert h.supervisor.run() == 0
    thread.join(5)
    assert sorted(index for index, _ in h.announced) == [1, 2, 3]
    assert sorted(h.announced) == sorted(h.ready())
    assert all(_gone(pid) for _, pid in h.announced)
    assert h.supervisor.pids == []
    # the first starts alone; the others connect only once it reported ready
    assert [launch.go_fd is None for launch in h.launches] == [True, False, False]


def test_second_signal_is_cold_and_the_exit_code_is_the_worst(tmp_path: Path) -> None:
    h = Harness(tmp_path, count=2, mode="linger")

    def term_twice() -> None:
        h.wait_for(lambda: len(h.announced) == 2)
        _term_supervisor()  # warm: the processes keep "finishing their tasks"
        time.sleep(0.3)
        assert not any(_gone(pid) for _, pid in h.announced)
        _term_supervisor()  # cold: SIGQUIT, they exit 3

    thread = h.in_background(term_twice)
    assert h.supervisor.run() == 3
    thread.join(5)
    assert all(_gone(pid) for _, pid in h.announced)


def test_error_of_one_process_at_shutdown_is_the_exit_code(tmp_path: Path) -> None:
    h = Harness(tmp_path, count=2, mode="error-2")

    def stop() -> None:
        h.wait_for(lambda: len(h.announced) == 2)
        _term_supervisor()

    thread = h.in_background(stop)
    assert h.supervisor.run() == 1
    thread.join(5)


def test_start_up_failure_of_the_first_process_is_not_retried(tmp_path: Path) -> None:
    h = Harness(tmp_path, count=3, mode="fail-1")
    started = time.monotonic()
    assert h.supervisor.run() == 4  # the failed process's own code
    assert time.monotonic() - started < 10
    assert len(h.launches) == 3  # no restart: one start per process
    assert h.ready() == []  # the others never connected: no go came
    assert h.announced == []


def test_start_up_failure_of_another_process_stops_the_rest(tmp_path: Path) -> None:
    h = Harness(tmp_path, count=2, mode="fail-2")
    assert h.supervisor.run() == 4
    assert len(h.launches) == 2
    [(index, pid)] = h.ready()  # process 1 was serving: it was stopped
    assert index == 1 and _gone(pid)


def test_a_process_that_dies_is_restarted(tmp_path: Path) -> None:
    h = Harness(tmp_path, count=2, backoff=0.05)

    def kill_one_then_stop() -> None:
        h.wait_for(lambda: len(h.announced) == 2)
        victim = dict(h.announced)[2]
        os.kill(victim, signal.SIGKILL)
        h.wait_for(lambda: len(h.ready()) == 3)  # a new process 2 reported ready
        _term_supervisor()

    thread = h.in_background(kill_one_then_stop)
    assert h.supervisor.run() == 0  # the crash was handled; the stop was clean
    thread.join(5)
    indexes = [index for index, _ in h.ready()]
    assert sorted(indexes) == [1, 2, 2]
    assert [launch.index for launch in h.launches] == [1, 2, 2]
    assert h.launches[2].go_fd is None  # a replacement connects at once
    assert all(_gone(pid) for _, pid in h.ready())


def test_restarts_back_off(tmp_path: Path) -> None:
    h = Harness(tmp_path, count=1, backoff=0.2)
    deaths: list[float] = []
    starts: list[float] = []

    def kill_repeatedly() -> None:
        for round_ in range(3):
            h.wait_for(lambda n=round_: len(h.ready()) == n + 1)
            starts.append(time.monotonic())
            deaths.append(time.monotonic())
            os.kill(h.ready()[-1][1], signal.SIGKILL)
        h.wait_for(lambda: len(h.ready()) == 4)
        starts.append(time.monotonic())
        _term_supervisor()

    thread = h.in_background(kill_repeatedly)
    assert h.supervisor.run() == 0
    thread.join(5)
    gaps = [starts[i + 1] - deaths[i] for i in range(3)]
    # 0.2 s, then 0.4 s, then 0.8 s: each wait at least its backoff
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4 and gaps[2] >= 0.8, gaps
