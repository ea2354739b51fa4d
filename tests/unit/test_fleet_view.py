"""What ``amqptasks events`` makes of a stream of Celery events (no broker)."""

from __future__ import annotations

import time

from rich.console import Console

from amqptasks.control.monitor import WINDOW, FleetView


def _render(view: FleetView) -> str:
    console = Console(width=160, record=True)
    console.print(view.render([("emails", 3), ("emails.dlq", None)]))
    return console.export_text()


def test_workers_states_and_failures_from_events() -> None:
    view = FleetView()
    now = time.time()
    view.add({"type": "worker-heartbeat", "hostname": "a@h", "freq": 2.0, "active": 1})
    view.add({"type": "worker-offline", "hostname": "b@h", "timestamp": now})
    view.add({"type": "task-received", "uuid": "1", "name": "proj.add"})
    view.add({"type": "task-succeeded", "uuid": "1"})
    view.add({"type": "task-received", "uuid": "2", "name": "proj.mail"})
    view.add({"type": "task-failed", "uuid": "2", "exception": "ValueError('x')"})
    view.add({"type": "something-else"})
    assert view.workers["a@h"].alive and not view.workers["b@h"].alive
    assert view.totals == {"RECEIVED": 2, "SUCCESS": 1, "FAILURE": 1}
    assert view.rates()["RECEIVED"] == 2 / WINDOW
    assert list(view.failures) == [("proj.mail", "2", "ValueError('x')")]
    text = _render(view)
    for expected in ("a@h", "online", "offline", "proj.mail", "ValueError('x')", "emails.dlq"):
        assert expected in text


def test_a_silent_worker_goes_offline() -> None:
    view = FleetView()
    view.add({"type": "worker-heartbeat", "hostname": "a@h", "freq": 2.0})
    view.workers["a@h"].last -= 5
    assert not view.workers["a@h"].alive
