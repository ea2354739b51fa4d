"""``control disable_events`` / ``enable_events`` stop and resume a worker's task events.

A module of its own because :mod:`tests.integration.test_fleet` runs real Flower for
its whole module, and Flower sends ``enable_events`` to every worker every 5 s (as it
does to Celery's), which would undo a ``disable_events`` under test.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pika
import pytest

from tests.integration.conftest import lines, wait_for
from tests.integration.test_fleet import TIMEOUT, Fleet, _amqptasks, _celery, fleet_worker

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


@pytest.fixture(scope="module")
def quiet_fleet(
    broker_url: str, core: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    with fleet_worker(broker_url, tmp_path_factory.mktemp("fleet-events")) as running:
        yield running


def _task_events(broker_url: str) -> tuple[Callable[[], list[dict[str, Any]]], Callable[[], None]]:
    """A queue of our own bound to the task events: (read what arrived, close)."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, "celeryev", "task.#")

    def read() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            method, _properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return found
            decoded = json.loads(body)
            found += decoded if isinstance(decoded, list) else [decoded]

    return read, connection.close


def test_control_disable_and_enable_events_stop_and_resume_task_events(
    broker_url: str, quiet_fleet: Fleet, core: Any
) -> None:
    fleet = quiet_fleet
    read, close = _task_events(broker_url)
    try:
        out = _celery(broker_url, "control", "disable_events", "-d", fleet.hostname)
        assert "task events disabled" in out, out
        try:
            quiet = core.add.apply_async((1, 2), queue=fleet.queue)
            assert quiet.get(timeout=TIMEOUT) == 3
            time.sleep(1.0)  # past the 0.1 s in which noted events go out
            assert [e for e in read() if e.get("uuid") == quiet.id] == []
        finally:
            out = _amqptasks(broker_url, "control", "enable_events", "-d", fleet.hostname)
        assert "task events enabled" in out, out
        loud = core.add.apply_async((2, 3), queue=fleet.queue)
        assert loud.get(timeout=TIMEOUT) == 5
        seen: list[str] = []

        def all_three() -> bool:
            seen.extend(e["type"] for e in read() if e.get("uuid") == loud.id)
            return len(seen) >= 3

        wait_for(all_three, timeout=10, what="the task's events after enable_events")
        assert seen == ["task-received", "task-started", "task-succeeded"]
    finally:
        close()


def test_a_long_calls_start_is_sent_while_it_runs(
    broker_url: str, quiet_fleet: Fleet, core: Any, tmp_path: Path
) -> None:
    read, close = _task_events(broker_url)
    try:
        ledger = tmp_path / "ledger"
        long_call = core.slow.apply_async((str(ledger), "long", 6.0), queue=quiet_fleet.queue)
        wait_for(lambda: lines(ledger), timeout=TIMEOUT, what="the call to start")
        seen: list[dict[str, Any]] = []

        def started() -> bool:
            seen.extend(e for e in read() if e.get("uuid") == long_call.id)
            return any(e["type"] == "task-started" for e in seen)

        wait_for(started, timeout=3, what="task-started while the call runs")
        assert not long_call.ready()
        assert [e["type"] for e in seen] == ["task-received", "task-started"]
        received, start = seen
        assert received["timestamp"] <= start["timestamp"] <= time.time()
        assert long_call.get(timeout=TIMEOUT) == "long"
    finally:
        close()
