"""A report a task builds in the background."""

from __future__ import annotations

from django.db import models


class Report(models.Model):
    """Made by the view at once; filled in by the worker."""

    url_count = models.PositiveIntegerField()
    status = models.CharField(max_length=20, default="queued")
    result = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
