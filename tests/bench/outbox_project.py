"""The outbox benchmark's Django settings and amqptasks app (``tests/bench/outbox.py``).

``DJANGO_SETTINGS_MODULE=tests.bench.outbox_project`` and
``amqptasks outbox relay -A tests.bench.outbox_project:app``: one module for both,
so that the benchmark and its relay subprocess run the same project. The SQLite
file is ``BENCH_OUTBOX_DB``; the broker is ``AMQPTASKS_BROKER_URL``.
"""

from __future__ import annotations

import os

from amqptasks import App

SECRET_KEY = "not-a-secret-bench-only"
USE_TZ = True
INSTALLED_APPS = ["amqptasks.contrib.django.outbox"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_OUTBOX_DB", ":memory:"),
        # The writers and the relay take turns on the file's lock (docs/django.md#outbox).
        "OPTIONS": {"timeout": 30},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

app = App("outboxbench", task_ignore_result=True)


@app.task(name="bench.outbox.noop")
def noop(n: int) -> None:
    """Never run: the benchmark counts the messages in the queue."""
