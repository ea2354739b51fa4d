"""``amqptasks result ID`` (#17): what a third party can learn of a task by its id.

One worker with remote control; each call runs the real command line against the
session broker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING, Any

from amqptasks.control.client import Control
from tests.integration.conftest import CORE_APP, REPO, cli_env, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.integration.conftest import WorkerProcess


def result_cli(broker_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amqptasks", "-A", CORE_APP, "result", *args],
        cwd=REPO,
        env=cli_env(broker_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def as_json(broker_url: str, *args: str) -> dict[str, Any]:
    run = result_cli(broker_url, *args, "--json")
    assert run.returncode == 0, run.stderr
    found: dict[str, Any] = json.loads(run.stdout)
    return found


def test_result_shows_running_failed_revoked_and_finished_tasks(
    core: Any,
    broker_url: str,
    queue_name: str,
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker("-Q", queue_name, "-c", "2", "--control", "--hostname", f"res@{queue_name}")
    flag, ledger = tmp_path / "flag", tmp_path / "ledger"

    # Running: the worker holding it says so.
    flag.write_text("hold")
    running = core.wait_for_flag.apply_async((str(flag), str(ledger), "r"), queue=queue_name)
    wait_for(ledger.exists, what="the task to start")
    found = as_json(broker_url, running.id)
    assert found["state"] == "STARTED"
    assert found["worker"] == f"res@{queue_name}"
    assert found["task"] == "tests.integration.apps.core.wait_for_flag"
    flag.unlink()
    assert running.get(timeout=20) == "r"

    # Failed for good: read from the queue's dead-letter queue, traceback included.
    failed = core.fail.apply_async(("boom 17",), queue=queue_name)
    failed.get(timeout=20, propagate=False)
    found = as_json(broker_url, failed.id, "-Q", queue_name)
    assert found["state"] == "FAILURE"
    assert found["result"] == "ValueError: boom 17"
    assert found["source"] == f"dead-letter queue {queue_name}.dlq"
    shown = result_cli(broker_url, failed.id, "-Q", queue_name, "--traceback")
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" in shown.stdout
    assert shown.stdout.rstrip().endswith("ValueError: boom 17")

    # --task names what the id must be.
    wrong = result_cli(broker_url, failed.id, "-Q", queue_name, "--task", "tests.other")
    assert wrong.returncode == 1
    assert "is a tests.integration.apps.core.fail, not a tests.other" in wrong.stderr

    # Revoked (held on the broker), with no worker involved.
    revoked_id = str(uuid.uuid4())
    with Control(core.app.settings.broker) as control:
        control.revoke([revoked_id])
    assert as_json(broker_url, revoked_id)["state"] == "REVOKED"

    # Finished well: the value went to the caller only; the command says so.
    done = core.add.apply_async((2, 2), queue=queue_name)
    assert done.get(timeout=20) == 4
    pending = result_cli(broker_url, done.id, "-Q", queue_name)
    assert pending.returncode == 0, pending.stderr
    assert "state:  PENDING" in pending.stdout
    assert "result went to the caller's reply queue" in pending.stderr
