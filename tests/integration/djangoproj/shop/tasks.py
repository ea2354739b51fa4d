"""Tasks of the project's own app: registered with the project's app directly."""

from __future__ import annotations

import os
from typing import Any

from django.db import connection

from tests.integration.djangoproj.amqptasks import app
from tests.integration.djangoproj.shop.models import Order


@app.task
def count_orders(reference: str) -> int:
    """How many orders have ``reference`` (a query on this thread's connection)."""
    return Order.objects.filter(reference=reference).count()


@app.task
def drop_connection() -> str:
    """Query, then close the connection under Django, as a database server that drops it."""
    Order.objects.count()
    raw = connection.connection
    assert raw is not None
    raw.close()
    return "dropped"


@app.task(bind=True)
def mark(self: Any, n: int) -> int:
    """Append this call's task id to the file ``AMQPTASKS_TEST_OUTBOX_SEEN`` names."""
    with open(os.environ["AMQPTASKS_TEST_OUTBOX_SEEN"], "a", encoding="ascii") as seen:
        seen.write(f"{self.request.id}\n")
    return n
