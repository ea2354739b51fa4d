"""The app of the cluster tests: quorum queues, and a task whose side effect is keyed on its id.

The broker URL comes from ``AMQPTASKS_BROKER_URL`` (a cluster's nodes, ``;``-separated).

Delivery is at least once: a task that finished just as its node died may run again
when the broker redelivers it, and a publish whose confirm was lost with its
connection is sent again under the same task id. So ``record`` does what a user's
task must do on a cluster: it writes every execution to ``attempts`` (which the
tests count as raw re-executions) and applies its side effect, a row in
``effects``, only if no row has that task id yet, in one transaction. ``effects``
has no unique constraint: a second row for an id would be a real duplicate side
effect, and the tests count them.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from amqptasks import App

#: Deliveries per message before it is dead-lettered. A message is returned to its
#: quorum queue (and counted) each time the connection holding it dies; the chaos
#: test kills or freezes nodes four times.
MAX_DELIVERIES = 10

SETTINGS: dict[str, Any] = {
    "default_queue_type": "quorum",
    "worker_max_deliveries": MAX_DELIVERIES,
}

app = App("cluster", **SETTINGS)

SCHEMA = (
    "CREATE TABLE attempts (task_id TEXT, token TEXT, redelivered INTEGER, at REAL)",
    "CREATE TABLE effects (task_id TEXT, token TEXT, at REAL)",
)


def create_ledger(path: str) -> None:
    """Create the ledger the ``record`` task writes to."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        for statement in SCHEMA:
            connection.execute(statement)
        connection.commit()
    finally:
        connection.close()


@app.task(name="cluster.record", bind=True, ignore_result=True)
def record(self: Any, db_path: str, token: str) -> None:
    """Log the execution; apply the side effect once per task id."""
    task_id: str = self.request.id
    now = time.time()
    connection = sqlite3.connect(db_path, timeout=60, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")  # one writer at a time: check, then write
        connection.execute(
            "INSERT INTO attempts VALUES (?, ?, ?, ?)",
            (task_id, token, int(bool(self.request.redelivered)), now),
        )
        done = connection.execute("SELECT 1 FROM effects WHERE task_id = ?", (task_id,))
        if done.fetchone() is None:
            connection.execute("INSERT INTO effects VALUES (?, ?, ?)", (task_id, token, now))
        connection.execute("COMMIT")
    finally:
        connection.close()


@app.task(name="cluster.echo")
def echo(value: int) -> int:
    """Return ``value``: a task whose caller waits for its result."""
    return value
