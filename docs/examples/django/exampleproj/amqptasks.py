"""``amqptasks worker -A exampleproj.amqptasks:app -B``."""

from __future__ import annotations

import os

from amqptasks import App

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproj.settings")

app = App("exampleproj")
app.config_from_object("django.conf:settings", namespace="AMQPTASKS")
app.autodiscover_tasks()
