"""``amqptasks worker --workers N``: N worker processes under one supervisor."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.conftest import READY_TIMEOUT, cli_env, lines, wait_for, worker_command

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.integration.conftest import WorkerProcess

#: What the supervisor prints once every worker process consumes.
RUNNING = re.compile(r"supervisor pid (\d+): (\d+) worker processes running, pids ([\d, ]+)")


def wait_running(worker: WorkerProcess, count: int = 2) -> list[int]:
    """Wait for the supervisor's line; return the worker processes' pids."""

    def running() -> re.Match[str] | None:
        if worker.proc.poll() is not None:
            raise AssertionError(f"exited with {worker.proc.returncode}:\n{worker.log()}")
        return RUNNING.search(worker.log())

    found = wait_for(running, timeout=READY_TIMEOUT, what="the worker processes")
    assert int(found[1]) == worker.proc.pid
    assert int(found[2]) == count
    return [int(pid) for pid in found[3].split(", ")]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def drained(rabbit: Any, queue: str) -> bool:
    return bool(rabbit.queue_depths().get(queue) == (0, 0))


def test_two_processes_share_the_queue_with_distinct_names(
    core: Any, start_worker: Callable[..., WorkerProcess], queue_name: str, rabbit: Any
) -> None:
    worker = start_worker("-Q", queue_name, "--workers", "2", "-c", "2", wait=False)
    pids = wait_running(worker)
    assert len(set(pids)) == 2 and worker.proc.pid not in pids

    results = [core.pid_and_hostname.apply_async(queue=queue_name) for _ in range(200)]
    ran_by = {(r["pid"], r["hostname"]) for r in (result.get(timeout=30) for result in results)}
    host = socket.gethostname()
    # every task ran in one of the two processes (never in the supervisor), each
    # process with its own node name
    assert sorted(ran_by) == sorted([(pids[0], f"worker-1@{host}"), (pids[1], f"worker-2@{host}")])
    wait_for(lambda: drained(rabbit, queue_name), what="every message acked")

    banner = worker.log()
    assert banner.count("[tasks]") == 1  # the first process prints the whole banner
    assert f"worker worker-2@{host} (worker process 2" in banner


@pytest.mark.parametrize("signalled", ["supervisor", "every-process"])
def test_sigterm_stops_every_process_warm(
    signalled: str,
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    rabbit: Any,
    tmp_path: Path,
) -> None:
    """SIGTERM to the supervisor, or to every process of the service at once (what
    systemd's default KillMode=control-group does): a warm shutdown either way."""
    ledger = tmp_path / "ledger"
    worker = start_worker(
        "-Q", queue_name, "--workers", "2", "-c", "1", "--prefetch-multiplier", "1", wait=False
    )
    pids = wait_running(worker)
    results = [
        core.slow_pid.apply_async((str(ledger), f"s{i}", 1.0), queue=queue_name) for i in range(2)
    ]
    wait_for(lambda: len(lines(ledger)) == 2, what="a task running in each process")
    worker.signal(signal.SIGTERM)
    if signalled == "every-process":
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
    assert worker.wait(30) == 0
    assert "cold shutdown" not in worker.log()
    # both running tasks were finished, not abandoned, one in each process
    assert sorted(result.get(timeout=5) for result in results) == ["s0", "s1"]
    done = {line.split()[2] for line in lines(ledger) if line.startswith("done")}
    assert done == {str(pid) for pid in pids}
    assert all(gone(pid) for pid in pids)
    assert drained(rabbit, queue_name)


def test_second_signal_is_a_cold_shutdown_of_every_process(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    rabbit: Any,
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger"
    worker = start_worker(
        "-Q", queue_name, "--workers", "2", "-c", "1", "--prefetch-multiplier", "1", wait=False
    )
    pids = wait_running(worker)
    for i in range(2):
        core.slow_pid.apply_async((str(ledger), f"c{i}", 30.0), queue=queue_name)
    wait_for(lambda: len(lines(ledger)) == 2, what="a task running in each process")
    worker.signal(signal.SIGTERM)
    wait_for(
        lambda: worker.log().count("warm shutdown: finishing running tasks") == 2,
        what="both processes to begin a warm shutdown",
    )
    worker.signal(signal.SIGINT)
    assert worker.wait(15) == 3
    assert all(gone(pid) for pid in pids)
    assert rabbit.queue_depths()[queue_name] == (2, 0)  # both abandoned tasks are back


def test_a_killed_process_is_replaced(
    core: Any, start_worker: Callable[..., WorkerProcess], queue_name: str, rabbit: Any
) -> None:
    # the process count from the environment, like every other worker setting
    worker = start_worker(
        "-Q", queue_name, "-c", "2", wait=False, env={"AMQPTASKS_WORKER_PROCESSES": "2"}
    )
    victim, survivor = wait_running(worker)  # processes 1 and 2
    os.kill(victim, signal.SIGKILL)  # as the OOM killer would

    def restarted() -> re.Match[str] | None:
        return re.search(r"worker process restarted .*pid=(\d+)", worker.log())

    replacement = int(wait_for(restarted, what="a new process")[1])
    wait_for(lambda: "worker process ready again" in worker.log(), what="it to consume")
    died = [line for line in worker.log().splitlines() if "worker process died" in line]
    assert len(died) == 1
    assert f"pid={victim}" in died[0] and "signal=SIGKILL" in died[0] and "index=1" in died[0]

    results = [core.pid_and_hostname.apply_async(queue=queue_name) for _ in range(100)]
    ran_by = {(r["pid"], r["hostname"]) for r in (result.get(timeout=30) for result in results)}
    host = socket.gethostname()
    # the replacement took the name of the process it replaced
    assert sorted(ran_by, key=lambda pair: pair[1]) == [
        (replacement, f"worker-1@{host}"),
        (survivor, f"worker-2@{host}"),
    ]
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert gone(survivor) and gone(replacement)
    assert drained(rabbit, queue_name)


def test_wrong_broker_url_fails_once_without_restarts(broker_env: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = cli_env(f"amqp://guest:Sup3rS3cret@127.0.0.1:{port}//")
    env["AMQPTASKS_BROKER_CONNECTION_RETRY_ON_STARTUP"] = "false"  # else it waits for one
    started = time.monotonic()
    done = subprocess.run(
        worker_command("-Q", "never", "--workers", "2"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - started < 15
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr  # reported by the first process only
    assert errors[0].startswith("Error: BrokerUnreachable") and f"127.0.0.1:{port}" in errors[0]
    assert "Sup3rS3cret" not in done.stderr
    assert "Traceback" not in done.stderr
    assert "restart" not in done.stderr
    assert "worker processes running" not in done.stderr


def test_pidfile_is_the_supervisors_and_processes_share_the_logfile(
    core: Any, start_worker: Callable[..., WorkerProcess], queue_name: str, tmp_path: Path
) -> None:
    pidfile = tmp_path / "worker.pid"
    logfile = tmp_path / "worker.log"
    worker = start_worker(
        "-Q",
        queue_name,
        "--workers",
        "2",
        "-n",
        "node%i@%h",
        "--pidfile",
        str(pidfile),
        "--logfile",
        str(logfile),
        wait=False,
    )
    pids = wait_running(worker)
    assert pidfile.read_text() == f"{worker.proc.pid}\n"
    log = logfile.read_text()
    host = socket.gethostname()
    for index in (1, 2):
        assert re.search(rf"worker ready .*hostname=node{index}@{re.escape(host)}", log)
    assert "worker processes ready" in log  # the supervisor's own log
    assert "worker ready" not in worker.log()  # stderr has the banners only
    assert core.pid_and_hostname.apply_async(queue=queue_name).get(timeout=20)["pid"] in pids

    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert not pidfile.exists()
    assert logfile.read_text().count("worker stopped") == 2
