"""Chaos: 5,000 tasks through five worker kills, a broker restart and a black hole (#5).

Every task records each attempt in a SQLite ledger and commits its side effect once
per task id (``INSERT OR IGNORE``), as an idempotent task would. At the end every
task has at least one attempt and exactly one side effect, nothing is left unacked,
nothing waits in the delay levels and the dead-letter queue is empty.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from tests.integration.conftest import WorkerProcess, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from amqptasks.testing import FaultProxy

TASKS = 5_000
KILLS = 5
HEARTBEAT = 2


def _count(db: Path, sql: str) -> int:
    connection = sqlite3.connect(db, timeout=60)
    try:
        return int(connection.execute(sql).fetchone()[0])
    finally:
        connection.close()


def _effects(db: Path) -> int:
    return _count(db, "SELECT COUNT(*) FROM effects")


def test_five_thousand_tasks_survive_kills_a_restart_and_a_black_hole(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    fault_proxy: FaultProxy,
    broker_url: str,
    queue_name: str,
    rabbit: Any,
    tmp_path: Path,
) -> None:
    db = tmp_path / "ledger.sqlite"
    setup = sqlite3.connect(db)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE attempts (task_id TEXT, token TEXT, pid INTEGER)")
    setup.execute("CREATE TABLE effects (task_id TEXT PRIMARY KEY, token TEXT)")
    setup.commit()
    setup.close()

    url = fault_proxy.url(broker_url, heartbeat=HEARTBEAT)
    env = {"AMQPTASKS_BROKER_URL": url}
    with core.app.batch():
        sent = [
            core.ledger_effect.apply_async((str(db), str(i)), queue=queue_name)
            for i in range(TASKS)
        ]
    ids = {r.id for r in sent}
    assert len(ids) == TASKS

    worker = start_worker("-Q", queue_name, "-c", "8", env=env)
    for kill in range(1, KILLS + 1):
        wait_for(
            lambda k=kill: _effects(db) >= k * 600, timeout=120, what=f"progress before kill {kill}"
        )
        worker.proc.send_signal(signal.SIGKILL)
        worker.wait(10)
        worker = start_worker("-Q", queue_name, "-c", "8", env=env)

    wait_for(lambda: _effects(db) >= 3_400, timeout=120, what="progress before the restart")
    rabbit.stop_app()
    rabbit.start_app()

    wait_for(lambda: _effects(db) >= 4_000, timeout=120, what="progress after the restart")
    fault_proxy.blackhole()
    time.sleep(3 * HEARTBEAT)
    fault_proxy.restore()

    wait_for(lambda: _effects(db) >= TASKS, timeout=240, what="every side effect")
    wait_for(
        lambda: rabbit.queue_depths().get(queue_name) == (0, 0),
        timeout=60,
        what="nothing ready or unacked",
    )
    assert _count(db, "SELECT COUNT(DISTINCT task_id) FROM attempts") == TASKS
    assert _count(db, "SELECT COUNT(*) FROM effects") == TASKS
    effect_ids = {row[0] for row in sqlite3.connect(db).execute("SELECT task_id FROM effects")}
    assert effect_ids == ids
    depths = rabbit.queue_depths()
    assert depths.get(f"{queue_name}.dlq", (0, 0)) == (0, 0)
    assert all(
        ready == 0
        for name, (ready, _u) in depths.items()
        if name.startswith("amqptasks.delay.level.")
    )
    attempts = _count(db, "SELECT COUNT(*) FROM attempts")
    print(
        f"\nchaos: {TASKS} tasks, {attempts} attempts ({attempts - TASKS} repeated after "
        f"kills, the restart and the black hole), {TASKS} side effects"
    )
