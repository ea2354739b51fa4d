"""Settings of the example: SQLite next to this file, the broker from AMQPTASKS_BROKER_URL."""

from __future__ import annotations

from pathlib import Path

from amqptasks import crontab

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "exampleproj.urls"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "amqptasks.contrib.django.outbox",
    "reports",
]
MIDDLEWARE: list[str] = []
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# amqptasks: every AMQPTASKS_* name is a setting (the broker URL comes from the
# environment, AMQPTASKS_BROKER_URL, which run.sh sets to its private node).
AMQPTASKS_DEFAULT_QUEUE = "example"
AMQPTASKS_BEAT_SCHEDULE = {
    "nightly-summary": {
        "task": "reports.tasks.nightly_summary",
        "schedule": crontab(minute=0, hour=3),
    },
}
