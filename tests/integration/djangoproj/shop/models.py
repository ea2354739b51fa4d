"""One model, to query from tasks; a test hook on the outbox's deletes."""

from __future__ import annotations

import os
import time
from typing import Any

from django.db import models
from django.db.models import signals


class Order(models.Model):
    """An order; tasks count and create them."""

    reference = models.CharField(max_length=50)

    class Meta:
        app_label = "shop"


#: Seconds a relay pass holds its delete when ``AMQPTASKS_TEST_OUTBOX_DELETING`` names a file.
DELETE_PAUSE = 0.2
_last_delete = [0.0]


def hold_the_delete(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Test only: each relay pass writes a line, then waits before deleting its rows.

    The pass's rows are published and confirmed by then, so a relay killed during
    the wait publishes them again: the window between confirm and delete, held open.
    """
    path = os.environ.get("AMQPTASKS_TEST_OUTBOX_DELETING")
    if not path:
        return
    now = time.monotonic()
    if now - _last_delete[0] > 0.02:  # the first row of a pass (the others follow at once)
        with open(path, "a", encoding="ascii") as deleting:
            deleting.write(f"{os.getpid()} {instance.pk}\n")
        time.sleep(DELETE_PAUSE)
    _last_delete[0] = time.monotonic()


signals.pre_delete.connect(hold_the_delete, sender="amqptasks_outbox.OutboxMessage")
