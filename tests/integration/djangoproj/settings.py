"""Settings of the test Django project: SQLite in the file ``AMQPTASKS_TEST_DJANGO_DB`` names."""

from __future__ import annotations

import os

SECRET_KEY = "not-a-secret-test-only"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "tests.integration.djangoproj.shop",
    "tests.integration.djangoproj.mail",
    "amqptasks.contrib.django.outbox",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("AMQPTASKS_TEST_DJANGO_DB", ":memory:"),
        # The relay, the worker and the test write the same file: wait for its lock.
        "OPTIONS": {"timeout": 30},
    }
}
try:  # Django 6 ships the task API; before it, the django-tasks backport is an app
    import django.tasks  # noqa: F401
except ImportError:
    INSTALLED_APPS.append("django_tasks")
TASKS = {
    "default": {
        "BACKEND": "amqptasks.contrib.django.tasks.Backend",
        "QUEUES": ["default"],
        "OPTIONS": {"APP": "tests.integration.djangoproj.amqptasks:app"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# Read by app.config_from_object(..., namespace="AMQPTASKS"); the rest of this module is not.
AMQPTASKS_TASK_MAX_RETRIES = 0
AMQPTASKS_DEFAULT_QUEUE = os.environ.get("AMQPTASKS_TEST_DJANGO_QUEUE", "djangoproj")
