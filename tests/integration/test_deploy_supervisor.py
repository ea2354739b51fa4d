"""deploy/supervisor/amqptasks.conf run by a real supervisord: the worker program reads the
broker URL from its environment file, runs tasks, and `supervisorctl stop` is a warm shutdown.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.integration.conftest import CORE_APP, REPO, lines, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

BIN = Path(sys.executable).parent
RECIPE = REPO / "deploy" / "supervisor" / "amqptasks.conf"


def _config(tmp_path: Path, broker_url: str, queue: str) -> Path:
    """The recipe with this machine's paths: venv, checkout, env file, logs, test app."""
    env_file = tmp_path / "amqptasks.env"
    env_file.write_text(f"AMQPTASKS_BROKER_URL='{broker_url}'\n")
    env_file.chmod(0o600)
    text = RECIPE.read_text()
    text = text.replace("/srv/proj/.venv/bin/amqptasks", str(BIN / "amqptasks"))
    text = text.replace("/srv/proj/amqptasks.env", str(env_file))
    text = text.replace("directory=/srv/proj", f"directory={REPO}")
    text = text.replace("/var/log/amqptasks/", f"{tmp_path}/")
    text = re.sub(r"(?m)^user=proj$", "user=root", text)
    text = text.replace("startsecs=5", "startsecs=1")  # RUNNING sooner: a shorter test
    text = text.replace("-A proj:app -Q default", f"-A {CORE_APP} -Q {queue}")
    # Only the worker is the subject here; the beat program is checked by parsing.
    text = text.replace("[program:amqptasks-beat]\n", "[program:amqptasks-beat]\nautostart=false\n")
    text = text.replace("autostart=true\nautorestart=true", "autorestart=true")
    ours = tmp_path / "amqptasks.conf"
    ours.write_text(text)
    main = tmp_path / "supervisord.conf"
    main.write_text(
        f"[unix_http_server]\nfile={tmp_path}/s.sock\n\n"
        f"[supervisord]\nlogfile={tmp_path}/supervisord.log\npidfile={tmp_path}/s.pid\n\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        f"[supervisorctl]\nserverurl=unix://{tmp_path}/s.sock\n\n"
        f"[include]\nfiles = {ours}\n"
    )
    return main


def _ctl(main: Path, *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "supervisorctl"), "-c", str(main), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout + done.stderr


@contextlib.contextmanager
def _supervisord(main: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if k != "AMQPTASKS_BROKER_URL"}
    with (main.parent / "supervisord.out").open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "supervisord"), "-n", "-c", str(main)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        _ctl(main, "shutdown")
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_supervisor_worker_runs_tasks_and_stops_warm(
    core: Any, broker_url: str, queue_name: str, tmp_path: Path, rabbit: Any
) -> None:
    main = _config(tmp_path, broker_url, queue_name)
    log = tmp_path / "worker.log"
    with _supervisord(main):
        wait_for(lambda: "worker ready" in (log.read_text() if log.exists() else ""), 40)
        assert core.add.apply_async((2, 3), queue=queue_name).get(timeout=20) == 5
        ledger = tmp_path / "ledger"
        slow = core.slow.apply_async((str(ledger), "s1", 2.5), queue=queue_name)
        wait_for(lambda: "start s1" in lines(ledger), what="the task to start")
        # RUNNING once up for startsecs: supervisord counts the start a success.
        wait_for(lambda: re.search(r"amqptasks-worker\s+RUNNING", _ctl(main, "status")), 10)
        assert lines(ledger) == ["start s1"]
        assert "stopped" in _ctl(main, "stop", "amqptasks:amqptasks-worker")
        assert lines(ledger) == ["start s1", "done s1"]  # finished before the stop returned
        assert slow.get(timeout=10) == "s1"
        assert rabbit.queue_depths()[queue_name] == (0, 0)
        assert re.search(r"amqptasks-worker\s+STOPPED", _ctl(main, "status"))
        assert "warm shutdown" in log.read_text()
