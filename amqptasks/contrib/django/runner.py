"""The amqptasks task that runs a Django ``@task`` on an amqptasks worker.

The :class:`~amqptasks.contrib.django.tasks.Backend` sends every Django task as a
call of ``amqptasks.django.run_task`` with the Django task's import path, its
arguments and the backend's alias; the worker imports the path and calls it.
``app.autodiscover_tasks()`` registers this task with the app.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils.module_loading import import_string

from amqptasks.contrib.django._api import tasks_api
from amqptasks.exceptions import ConfigError
from amqptasks.request import current_request
from amqptasks.shared import shared_task

__all__ = ["RUN_TASK", "run_task"]

#: The amqptasks name of the runner.
RUN_TASK = "amqptasks.django.run_task"


@shared_task(name=RUN_TASK)
def run_task(module_path: str, args: list[Any], kwargs: dict[str, Any], backend: str) -> Any:
    """Run the Django task at ``module_path``; its value, made JSON-safe as Django does."""
    api = tasks_api()
    task = import_string(module_path)
    if not isinstance(task, api.Task):
        raise ConfigError(f"{module_path} is a {type(task).__name__}, not a Django @task")
    if not task.takes_context:
        return api.normalize_json(task.call(*args, **kwargs))
    request = current_request.get()
    now = dt.datetime.now(dt.timezone.utc)
    result = api.TaskResult(
        task=task,
        id=request.id if request is not None else "",
        status=api.TaskResultStatus.RUNNING,
        enqueued_at=None,
        started_at=now,
        finished_at=None,
        last_attempted_at=now,
        args=args,
        kwargs=kwargs,
        backend=backend,
        errors=[],
        worker_ids=[request.hostname or ""] if request is not None else [],
    )
    return api.normalize_json(task.call(api.TaskContext(task_result=result), *args, **kwargs))
