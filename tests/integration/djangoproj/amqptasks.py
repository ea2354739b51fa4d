"""The project's app: ``amqptasks worker -A tests.integration.djangoproj.amqptasks:app``."""

from __future__ import annotations

import os

from amqptasks import App

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.integration.djangoproj.settings")

app = App("djangoproj")
app.config_from_object("django.conf:settings", namespace="AMQPTASKS")
app.autodiscover_tasks()
