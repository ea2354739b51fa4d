"""``amqptasks multi``: two named, detached workers started, restarted and stopped warm."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from amqptasks.multi.pidfile import alive, read_pid
from tests.integration.conftest import CORE_APP, REPO, cli_env, lines, wait_for

if TYPE_CHECKING:
    from pathlib import Path

HOST = socket.gethostname()


def _multi(broker_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amqptasks", "multi", *args],
        cwd=REPO,
        env=cli_env(broker_url),
        capture_output=True,
        text=True,
        timeout=90,
    )


def _ready(log: Path, count: int = 1) -> bool:
    return log.exists() and log.read_text(errors="replace").count("worker ready") >= count


def test_multi_start_restart_stopwait_stop(
    core: Any, broker_url: str, queue_name: str, tmp_path: Path, rabbit: Any
) -> None:
    nodes = ["w1", "w2"]
    paths = ["--pidfile", f"{tmp_path}/run/%n.pid", "--logfile", f"{tmp_path}/log/%n.log"]
    options = ["-A", CORE_APP, "-Q", queue_name, "-c", "1", "-l", "info", *paths]
    pidfiles = [tmp_path / "run" / f"{n}.pid" for n in nodes]
    logs = [tmp_path / "log" / f"{n}.log" for n in nodes]
    try:
        started = _multi(broker_url, "start", *nodes, *options)
        assert started.returncode == 0, started.stdout + started.stderr
        pids = [read_pid(p) for p in pidfiles]
        for name, pid in zip(nodes, pids, strict=True):
            assert f"> {name}@{HOST}: OK (pid {pid})" in started.stdout
            assert pid is not None and alive(pid)
            # Detached: a session of its own, not the test's process group.
            assert os.getsid(pid) == pid
        for log in logs:
            wait_for(lambda log=log: _ready(log), timeout=40, what=f"{log.name} ready")

        # Both consume: four calls (-c 1, fair dispatch) land on both nodes.
        calls = [core.whoami.apply_async(queue=queue_name) for _ in range(6)]
        hosts = {call.get(timeout=20)["hostname"] for call in calls}
        assert hosts == {f"w1@{HOST}", f"w2@{HOST}"}

        again = _multi(broker_url, "start", *nodes, *options)
        assert (
            again.returncode == 0 and f"w1@{HOST}: already running (pid {pids[0]})" in again.stdout
        )

        restarted = _multi(broker_url, "restart", *nodes, *options)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        new_pids = [read_pid(p) for p in pidfiles]
        assert all(p is not None and alive(p) for p in new_pids)
        assert not set(new_pids) & set(pids) and not any(alive(p) for p in pids if p)
        for log in logs:
            wait_for(lambda log=log: _ready(log, 2), timeout=40, what=f"{log.name} ready again")

        # stop returns at once; stopwait then waits for the running task (without a second
        # SIGTERM, which would be a cold shutdown): it finishes, is acked, nothing is left.
        ledger, flag = tmp_path / "ledger", tmp_path / "flag"
        flag.touch()  # the task runs until the flag is removed
        held = core.wait_for_flag.apply_async((str(flag), str(ledger), "t1"), queue=queue_name)
        wait_for(lambda: "start t1" in lines(ledger), what="the task to start")
        asked = _multi(broker_url, "stop", *nodes, *paths)
        assert asked.returncode == 0, asked.stdout + asked.stderr
        assert f"> w1@{HOST}: TERM -> {new_pids[0]}" in asked.stdout
        assert "Waiting" not in asked.stdout and not held.ready()  # stop did not wait
        pids_re = "|".join(str(p) for p in new_pids)
        waiting = subprocess.Popen(
            [sys.executable, "-m", "amqptasks", "multi", "stopwait", *nodes, *paths],
            cwd=REPO,
            env=cli_env(broker_url),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert waiting.stdout is not None
        seen = []
        while not seen or not seen[-1].startswith("> Waiting for"):
            line = waiting.stdout.readline()
            assert line, f"stopwait ended before waiting: {''.join(seen)}"
            seen.append(line)
        time.sleep(0.5)
        assert waiting.poll() is None  # stopwait waits for the task that still runs
        assert not held.ready()
        flag.unlink()
        rest, _ = waiting.communicate(timeout=60)
        out = "".join(seen) + rest
        assert waiting.returncode == 0, out
        assert held.get(timeout=10) == "t1"
        # The idle node may be gone already; the busy one was waited for, not signalled again.
        assert re.search(rf"> w[12]@{HOST}: already stopping \(pid ({pids_re})\)", out)
        assert "TERM ->" not in out
        assert re.search(rf"> Waiting for [12] nodes? -> ({pids_re})", out)
        assert not any(alive(p) for p in new_pids if p)
        assert not any(p.exists() for p in pidfiles)
        assert not list((tmp_path / "run").iterdir())  # no marker left either
        assert rabbit.queue_depths()[queue_name] == (0, 0)

        down = _multi(broker_url, "stop", "w1", *paths)
        assert down.returncode == 0
        assert down.stdout.strip() == (
            f"> w1@{HOST}: DOWN (not running: no pid file at {pidfiles[0]})"
        )
    finally:
        _multi(broker_url, "kill", *nodes, *paths)
