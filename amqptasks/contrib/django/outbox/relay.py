"""The outbox relay: publish rows with broker confirms, delete each after its confirm.

One pass (:func:`relay_once`) runs in one transaction: it takes up to ``batch``
rows, publishes them pipelined (:meth:`App.batch`, every confirm awaited),
deletes the confirmed ones and commits. A crash anywhere before the commit
leaves the rows for the next pass, which publishes them again with the same
task ids: a duplicate, never a loss. Each publish carries its own
``x-publish-id``, so workers run the first publish of a task id and skip the
others (:mod:`amqptasks.dedupe`).

Several relays share a database that has row locks (PostgreSQL, MySQL 8,
Oracle): rows are taken with ``SELECT ... FOR UPDATE SKIP LOCKED``, so each
relay publishes rows the others are not holding. SQLite has no row locks: a
pass takes the database's write lock before it reads, so relays (and writers)
take turns; one relay per SQLite database is the sensible setup.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction

from amqptasks import constants
from amqptasks.contrib.django.outbox.models import OutboxMessage
from amqptasks.exceptions import BatchPublishError
from amqptasks.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["relay_forever", "relay_once"]

log = get_logger(__name__)


def _options(row: OutboxMessage) -> dict[str, Any]:
    options = dict(row.options)
    for key in ("eta", "expires"):
        if isinstance(options.get(key), str):
            options[key] = dt.datetime.fromisoformat(options[key])
    # Each publish of the row is told apart from the others: workers run the first only.
    publish_id = f"outbox:{row.pk}:{uuid.uuid4().hex}"
    options["headers"] = {**(options.get("headers") or {}), constants.HEADER_PUBLISH_ID: publish_id}
    # The enqueuing process is not here to read a result: none is sent.
    return {**options, "task_id": row.task_id, "ignore_result": True}


def _publish(app: Any, rows: Sequence[OutboxMessage]) -> list[int]:
    """Publish ``rows``; the primary keys of those the broker confirmed."""
    failed: set[str | None] = set()
    try:
        with app.batch():
            for row in rows:
                app.send_task(row.task_name, row.args, row.kwargs, **_options(row))
    except BatchPublishError as exc:
        failed = {getattr(failure, "message_id", None) for failure in exc.failures}
        log.warning("outbox rows not confirmed; kept for the next pass", count=len(failed))
    return [row.pk for row in rows if row.task_id not in failed]


def relay_once(app: Any, *, batch: int = 500, using: str = "default") -> int:
    """Publish up to ``batch`` rows of database ``using``; how many were confirmed and deleted."""
    connection = connections[using]
    with transaction.atomic(using=using):
        if connection.vendor == "sqlite":
            # Take SQLite's write lock first (waiting out the busy timeout): a read
            # lock upgraded later fails at once when a writer is waiting, which
            # would publish the rows again on every pass. Relays take turns.
            OutboxMessage.objects.using(using).filter(pk__lt=0).update(task_name="")
        rows_query = OutboxMessage.objects.using(using).order_by("id")
        if connection.features.has_select_for_update_skip_locked:
            rows_query = rows_query.select_for_update(skip_locked=True)
        rows = list(rows_query[:batch])
        if not rows:
            return 0
        confirmed = _publish(app, rows)
        OutboxMessage.objects.using(using).filter(pk__in=confirmed).delete()
    return len(confirmed)


def relay_forever(
    app: Any,
    *,
    batch: int = 500,
    interval: float = 0.5,
    using: str = "default",
    stop: threading.Event | None = None,
) -> None:
    """Relay until ``stop`` is set: a full batch goes on at once, else waits ``interval`` s.

    An error (the broker or the database away) is logged in one line and the
    pass is tried again after ``interval``: its rows stay in the table.
    """
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            sent = relay_once(app, batch=batch, using=using)
        except Exception as exc:
            log.error("outbox relay pass failed", error=f"{type(exc).__name__}: {exc}")
            sent = 0
        if sent < batch:
            stop.wait(interval)
