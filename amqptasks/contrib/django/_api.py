"""Django's task API, from ``django.tasks`` (Django 6) or the ``django-tasks`` backport."""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

from amqptasks.exceptions import ConfigError

__all__ = ["tasks_api"]

_api: Any = None


def tasks_api() -> Any:
    """A namespace: ``BaseTaskBackend``, ``Task``, ``TaskResult``, ``TaskResultStatus``,
    ``TaskError``, ``TaskContext``, ``TaskResultDoesNotExist``, ``task_enqueued``,
    ``normalize_json``.

    Raises:
        ConfigError: neither Django 6 nor the ``django-tasks`` package is installed.
    """
    global _api
    if _api is not None:
        return _api
    for package in ("django.tasks", "django_tasks"):
        try:
            base = importlib.import_module(f"{package}.base")
            backends = importlib.import_module(f"{package}.backends.base")
            exceptions = importlib.import_module(f"{package}.exceptions")
            signals = importlib.import_module(f"{package}.signals")
        except ImportError:
            continue
        # Django 6 keeps it in django.utils.json; the backport in django_tasks.utils.
        json_module = "django.utils.json" if package == "django.tasks" else f"{package}.utils"
        normalize_json = importlib.import_module(json_module).normalize_json
        _api = SimpleNamespace(
            BaseTaskBackend=backends.BaseTaskBackend,
            Task=base.Task,
            TaskResult=base.TaskResult,
            TaskResultStatus=base.TaskResultStatus,
            TaskError=base.TaskError,
            TaskContext=base.TaskContext,
            TaskResultDoesNotExist=exceptions.TaskResultDoesNotExist,
            task_enqueued=signals.task_enqueued,
            normalize_json=normalize_json,
        )
        return _api
    raise ConfigError(
        "Django's task API needs Django 6 (django.tasks) or the django-tasks package "
        "(pip install 'amqptasks[django-tasks]')"
    )
