"""One model, to query from tasks."""

from __future__ import annotations

from django.db import models


class Order(models.Model):
    """An order; tasks count and create them."""

    reference = models.CharField(max_length=50)

    class Meta:
        app_label = "shop"
