"""Worker command-line options of issue 5: --hostname, --logfile, -X/--exclude-queues."""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING, Any

from tests.integration.conftest import wait_for

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.integration.conftest import WorkerProcess


def consumed_queues(rabbit: Any) -> set[str]:
    out = rabbit.ctl("list_consumers", "-q", "--formatter", "json", "queue_name")
    return {row["queue_name"] for row in (json.loads(out) if out.strip() else [])}


def test_logfile_hostname_and_exclude_queues(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    unique_name: Callable[[str], str],
    amqp: Any,
    rabbit: Any,
    tmp_path: Path,
) -> None:
    excluded = unique_name("excluded")
    logfile = tmp_path / "worker.log"
    worker = start_worker(
        "-Q",
        f"{queue_name},{excluded}",
        "-X",
        excluded,
        "--hostname",
        "opts@%h",
        "--logfile",
        str(logfile),
        wait=False,
    )
    wait_for(
        lambda: logfile.exists() and "worker ready" in logfile.read_text(),
        timeout=40,
        what="worker ready in the log file",
    )
    log = logfile.read_text()
    assert "hostname=opts@" in log
    assert f"queues=['{queue_name}']" in log
    assert "worker ready" not in worker.log()  # the log went to the file, not stderr
    banner = worker.log()
    assert "worker opts@" in banner
    assert f"queues:      {queue_name}\n" in banner
    assert "guest:***@" in banner and "guest:guest@" not in banner
    assert "tests.integration.apps.core.add" in banner

    consuming = consumed_queues(rabbit)
    assert queue_name in consuming
    assert excluded not in consuming
    assert core.add.apply_async((4, 4), queue=queue_name).get(timeout=20) == 8
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    assert "worker stopped" in logfile.read_text()
    amqp.queue_delete(excluded)  # only if something declared it (nothing should have)


def test_excluding_every_queue_is_a_usage_error(
    start_worker: Callable[..., WorkerProcess], queue_name: str
) -> None:
    worker = start_worker("-Q", queue_name, "-X", queue_name, wait=False)
    assert worker.wait(30) == 2
    assert "no queue left to consume" in worker.log()
