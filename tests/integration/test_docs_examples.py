"""The runnable Python examples of README.md and docs/, run against a real node.

Each page runs in a fresh directory outside the repository: its files
(```` ```python title="proj.py" ````) are written there, its worker (if the page
asks for one) started there, then its examples run in page order in one
namespace. See tests/docs_examples.py for the convention.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.docs_examples import Page, pages, parse

RUNNER = """
import json, sys, traceback
blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for where, code in blocks:
    try:
        exec(compile(code, where, "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"example at {where} failed", file=sys.stderr)
        sys.exit(1)
print("all examples ran")
"""

RUNNABLE = [page for page in map(parse, pages()) if page.of_kind("run")]


def _env(broker_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMQPTASKS_")}
    env.pop("PYTHONPATH", None)
    env["AMQPTASKS_BROKER_URL"] = broker_url
    return env


def _wait_ready(proc: subprocess.Popen[bytes], log: Path, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "worker ready" in text:
            return
        if proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode}:\n{text}")
        time.sleep(0.1)
    raise AssertionError(f"worker not ready:\n{log.read_text(errors='replace')}")


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: p.name)
def test_examples_of_the_page_run(page: Page, broker_url: str) -> None:
    env = _env(broker_url)
    with tempfile.TemporaryDirectory(prefix="amqptasks-docs-") as tmp:
        where = Path(tmp)
        for block in page.of_kind("file"):
            assert block.title is not None
            (where / block.title).parent.mkdir(parents=True, exist_ok=True)
            (where / block.title).write_text(block.code)
        worker: subprocess.Popen[bytes] | None = None
        log = where / "worker.log"
        if page.worker is not None:
            with log.open("wb") as out:
                worker = subprocess.Popen(
                    [sys.executable, "-m", "amqptasks", "worker", *page.worker, "-l", "info"],
                    cwd=where,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            _wait_ready(worker, log)
        try:
            blocks = [[f"{page.name}:{b.line}", b.code] for b in page.of_kind("run")]
            (where / "blocks.json").write_text(json.dumps(blocks))
            done = subprocess.run(
                [sys.executable, "-c", RUNNER, str(where / "blocks.json")],
                cwd=where,
                env={**env, "PYTHONPATH": str(where)},
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            worker_log = log.read_text(errors="replace") if log.exists() else ""
            assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\nworker:\n{worker_log}"
            assert "all examples ran" in done.stdout
        finally:
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait(10)
