"""``broker_connection_retry_on_startup``: a worker started before its broker waits for it."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from amqptasks.testing import FaultProxy

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.integration.conftest import WorkerProcess


def test_worker_started_before_its_broker_serves_once_the_broker_answers(
    broker_url: str, core: Any, queue_name: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    upstream = urlsplit(broker_url)
    # Where the broker "will be": nothing listens on the port yet.
    proxy = FaultProxy(str(upstream.hostname), int(upstream.port or 5672), port=port)
    late_url = broker_url.replace(upstream.netloc.rpartition("@")[2], f"127.0.0.1:{port}")
    worker = start_worker("-Q", queue_name, wait=False, env={"AMQPTASKS_BROKER_URL": late_url})
    deadline = time.monotonic() + 30
    while "broker unreachable at start-up; retrying" not in worker.log():
        assert worker.proc.poll() is None, worker.log()
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.1)
    with proxy:  # the broker comes up
        worker.wait_ready(timeout=60)
        assert core.add.apply_async((2, 3), queue=queue_name).get(timeout=30) == 5
        assert "connection refused" in worker.log()
