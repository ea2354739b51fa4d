"""The outbox table: one row per task call waiting to be published."""

from __future__ import annotations

from typing import Any

from django.db import models


class OutboxMessage(models.Model):
    """A task call written in the caller's transaction; the relay publishes, then deletes it.

    ``task_id`` is fixed here, so a publish repeated after a relay crash carries
    the same id as the first.
    """

    id: models.BigAutoField[int, int] = models.BigAutoField(primary_key=True)
    task_id: models.CharField[str, str] = models.CharField(max_length=64, unique=True)
    task_name: models.CharField[str, str] = models.CharField(max_length=255)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    #: ``apply_async`` options (queue, eta as ISO 8601, priority, headers, ...).
    options = models.JSONField(default=dict)
    created_at: models.DateTimeField[Any, Any] = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "amqptasks_outbox"
        db_table = "amqptasks_outbox"
        ordering = ("id",)

    def __str__(self) -> str:
        return f"{self.task_name} {self.task_id}"
