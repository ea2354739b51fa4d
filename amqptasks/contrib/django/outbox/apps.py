"""The outbox's Django app: add ``"amqptasks.contrib.django.outbox"`` to ``INSTALLED_APPS``."""

from __future__ import annotations

from django.apps import AppConfig


class OutboxConfig(AppConfig):
    """The ``amqptasks_outbox`` table and its migration."""

    name = "amqptasks.contrib.django.outbox"
    label = "amqptasks_outbox"
    verbose_name = "amqptasks outbox"
    default_auto_field = "django.db.models.BigAutoField"
