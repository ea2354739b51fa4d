"""The quickstart, followed to the letter by a newcomer, in a folder outside the repository.

A wheel built from the repository is installed into a fresh virtualenv (nothing of
this checkout on ``sys.path``); the installed ``amqptasks dev-node start`` starts the
node, ``proj.py`` is the quickstart's own block, the installed ``amqptasks worker``
runs it, and a result comes back to a script and to ``amqptasks call --wait``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.docs_examples import REPO, parse

pytestmark = pytest.mark.timeout(600)


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def test_quickstart_in_a_fresh_venv_outside_the_repository() -> None:
    quickstart = parse(REPO / "docs" / "quickstart.md")
    (proj_block,) = [b for b in quickstart.of_kind("file") if b.title == "proj.py"]
    assert quickstart.worker is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQPTASKS_", "VIRTUAL_ENV"))}
    env.pop("PYTHONPATH", None)
    with tempfile.TemporaryDirectory(prefix="amqptasks-newcomer-") as tmp:
        home = Path(tmp)
        assert REPO not in home.parents
        # Install: a wheel built from the repository, into a fresh virtualenv.
        _run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", "dist", str(REPO)],
            home,
            env,
        )
        (wheel,) = (home / "dist").glob("amqptasks-*.whl")
        _run([sys.executable, "-m", "venv", "venv"], home, env)
        bin_dir = home / "venv" / "bin"
        _run([str(bin_dir / "pip"), "install", "-q", str(wheel)], home, env)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
        env["AMQPTASKS_DEV_NODE_DIR"] = str(home / "node")
        project = home / "myproject"
        project.mkdir()
        # The installed package is the one imported, not this checkout.
        where = _run(["python", "-c", "import amqptasks; print(amqptasks.__file__)"], project, env)
        assert where.startswith(str(home / "venv"))
        # Start a local RabbitMQ node.
        url = _run(["amqptasks", "dev-node", "start"], project, env).strip().splitlines()[-1]
        assert url.startswith("amqp://guest:guest@127.0.0.1:")
        env["AMQPTASKS_BROKER_URL"] = url
        worker: subprocess.Popen[bytes] | None = None
        try:
            assert _run(["amqptasks", "dev-node", "url"], home, env).strip() == url
            # Define tasks, run a worker.
            (project / "proj.py").write_text(proj_block.code)
            log = project / "worker.log"
            with log.open("wb") as out:
                worker = subprocess.Popen(
                    ["amqptasks", "worker", *quickstart.worker, "-l", "info"],
                    cwd=project,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            deadline = time.monotonic() + 60
            while "worker ready" not in log.read_text(errors="replace"):
                assert worker.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(0.2)
            # Send tasks and get results.
            script = "from proj import add\nprint(add.delay(2, 3).get(timeout=30))\n"
            assert _run(["python", "-c", script], project, env).strip() == "5"
            shell = [
                "amqptasks",
                "call",
                "proj.add",
                "--args",
                "[2, 3]",
                "--wait",
                "-A",
                "proj:app",
            ]
            assert _run(shell, project, env).strip() == "5"
        finally:
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(30)
            _run(["amqptasks", "dev-node", "stop"], home, env)
        assert worker is not None and worker.returncode == 0
