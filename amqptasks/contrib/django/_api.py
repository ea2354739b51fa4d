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
    ``normalize_json``, ``get_module_path``.

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
            utils = importlib.import_module(f"{package}.utils")
        except ImportError:
            continue
        _api = SimpleNamespace(
            BaseTaskBackend=backends.BaseTaskBackend,
            Task=base.Task,
            TaskResult=base.TaskResult,
            TaskResultStatus=base.TaskResultStatus,
            TaskError=base.TaskError,
            TaskContext=base.TaskContext,
            TaskResultDoesNotExist=exceptions.TaskResultDoesNotExist,
            task_enqueued=signals.task_enqueued,
            normalize_json=utils.normalize_json,
            get_module_path=utils.get_module_path,
        )
        return _api
    raise ConfigError(
        "Django's task API needs Django 6 (django.tasks) or the django-tasks package "
        "(pip install 'amqptasks[django-tasks]')"
    )
