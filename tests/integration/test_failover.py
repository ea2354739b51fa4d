"""Several broker URLs, as a cluster's nodes: producers and workers use a node that answers (#19).

No cluster is needed to show the client side: a URL list whose first node is dead
(nothing listens on its port), and one whose first node goes away mid-run (a proxy
in front of the session broker, stopped), with the session broker as the next node.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from typing import TYPE_CHECKING

from amqptasks import App
from tests.integration.apps.cluster import SETTINGS, create_ledger
from tests.integration.conftest import wait_for

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import pytest

    from amqptasks.testing import FaultProxy
    from tests.integration.conftest import WorkerProcess

CLUSTER_APP = "tests.integration.apps.cluster:app"
TASK = "cluster.record"
#: The dead node's password: it must never be printed.
SECRET = "dead-node-s3cret"


def _dead_url() -> tuple[str, int]:
    """A URL of a port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"amqp://guest:{SECRET}@127.0.0.1:{port}//", port


def _effects(db: Path) -> dict[str, int]:
    connection = sqlite3.connect(db, timeout=30)
    try:
        rows = connection.execute("SELECT token, COUNT(*) FROM effects GROUP BY token")
        return {str(token): int(count) for token, count in rows}
    finally:
        connection.close()


def test_producers_and_a_worker_skip_a_dead_first_node(
    broker_url: str,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead, dead_port = _dead_url()
    url = f"{dead};{broker_url}"
    db = tmp_path / "ledger.sqlite"
    create_ledger(str(db))
    monkeypatch.setenv("AMQPTASKS_BROKER_URL", url)  # the session's would win
    producer = App("cluster", **SETTINGS)
    assert producer.settings.broker_url == url

    async def publish_async() -> None:
        await producer.asend_task(TASK, (str(db), "async"), queue=queue_name)
        await producer.aclose()

    try:
        producer.send_task(TASK, (str(db), "sync"), queue=queue_name)
        asyncio.run(publish_async())
    finally:
        producer.close()

    worker = start_worker("-Q", queue_name, app=CLUSTER_APP, env={"AMQPTASKS_BROKER_URL": url})
    wait_for(lambda: _effects(db) == {"sync": 1, "async": 1}, what="both tasks run once")
    log = worker.log()
    assert SECRET not in log
    # The banner names both nodes, the dead one first, each password masked.
    assert f"guest:***@127.0.0.1:{dead_port}/;amqp://guest:***@127.0.0.1:" in log


def test_a_lost_connection_fails_over_to_the_next_node(
    broker_url: str,
    fault_proxy: FaultProxy,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Node 1 is the proxy, node 2 the broker itself: everyone connects through the
    # proxy first; once it is gone (its port closed), only node 2 can serve.
    url = f"{fault_proxy.url(broker_url)};{broker_url}"
    db = tmp_path / "ledger.sqlite"
    create_ledger(str(db))
    monkeypatch.setenv("AMQPTASKS_BROKER_URL", url)
    producer = App("cluster", **SETTINGS)
    env = {"AMQPTASKS_BROKER_URL": url}

    async def scenario() -> WorkerProcess:
        await producer.asend_task(TASK, (str(db), "async-before"), queue=queue_name)
        producer.send_task(TASK, (str(db), "sync-before"), queue=queue_name)
        worker = start_worker("-Q", queue_name, app=CLUSTER_APP, env=env)
        wait_for(lambda: len(_effects(db)) == 2, what="the tasks sent through node 1")
        links = fault_proxy.connections
        assert links >= 4, f"expected producers and worker on node 1, {links} links"
        fault_proxy.stop()
        producer.send_task(TASK, (str(db), "sync-after"), queue=queue_name)
        await producer.asend_task(TASK, (str(db), "async-after"), queue=queue_name)
        await producer.aclose()
        return worker

    try:
        worker = asyncio.run(scenario())
    finally:
        producer.close()
    wait_for(
        lambda: (
            _effects(db) == {"async-before": 1, "sync-before": 1, "sync-after": 1, "async-after": 1}
        ),
        what="the tasks sent after node 1 went away run once",
    )
    log = worker.log()
    assert "broker connection lost" in log
    assert "broker connection restored" in log
