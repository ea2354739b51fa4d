"""A backend for Django's task API (``django.tasks``, or the ``django-tasks`` backport).

::

    TASKS = {
        "default": {
            "BACKEND": "amqptasks.contrib.django.tasks.Backend",
            "QUEUES": ["default", "reports"],         # Django queue names allowed
            "OPTIONS": {"APP": "proj.amqptasks:app"},  # default: the current app
        }
    }

A Django ``@task``'s ``.enqueue()`` publishes (with a broker confirm) a call of
``amqptasks.django.run_task`` carrying the task's import path and arguments; an
amqptasks worker of the project (``app.autodiscover_tasks()``) runs it. Django's
queue ``"default"`` is the app's default queue; any other name is an amqptasks
queue of that name. ``run_after`` becomes the message's ``eta`` (the broker's
delay levels hold it).

Results come back the amqptasks way, to the reply queue of the process that
enqueued: ``result.refresh()`` / ``backend.get_result(id)`` work there (for the
results it enqueued), not in another process, so ``supports_get_result`` is False.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, cast

from amqptasks import _current
from amqptasks.contrib.django._api import tasks_api
from amqptasks.contrib.django.runner import run_task
from amqptasks.exceptions import ConfigError
from amqptasks.results import states
from amqptasks.results.result import AsyncResult

if TYPE_CHECKING:
    from amqptasks.shared import SharedTask

__all__ = ["Backend"]

#: Results remembered per process for ``get_result`` (the oldest are forgotten first).
MAX_REMEMBERED = 10_000

_STATUS = {
    states.PENDING: "READY",
    states.RECEIVED: "READY",
    states.RETRY: "READY",
    states.STARTED: "RUNNING",
    states.SUCCESS: "SUCCESSFUL",
    states.FAILURE: "FAILED",
    states.REVOKED: "FAILED",
}


class Backend(tasks_api().BaseTaskBackend):  # type: ignore[misc]
    """Runs Django tasks on amqptasks workers, through RabbitMQ."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = False
    supports_priority = False

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self._app_path: str | None = self.options.get("APP")
        self._app: Any = None
        self._sent: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def app(self) -> Any:
        """The amqptasks App the tasks go through (``OPTIONS["APP"]``, or the current one)."""
        if self._app is None:
            if self._app_path:
                from amqptasks._appref import import_app

                self._app = import_app(self._app_path)
            else:
                self._app = _current.get_current()
                if self._app is None:
                    raise ConfigError(
                        f"task backend {self.alias!r}: no amqptasks App was made; set "
                        f'OPTIONS={{"APP": "proj.amqptasks:app"}}'
                    )
        return self._app

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Publish the call (confirmed); a READY ``TaskResult`` with the message's id."""
        api = tasks_api()
        self.validate_task(task)
        options: dict[str, Any] = {}
        if task.queue_name != "default":
            options["queue"] = task.queue_name
        if task.run_after is not None:
            options["eta"] = task.run_after
        args, kwargs = api.normalize_json(list(args)), api.normalize_json(dict(kwargs))
        sent = (
            cast("SharedTask", run_task)
            .for_app(self.app())
            .apply_async((task.module_path, args, kwargs, self.alias), **options)
        )
        result = self._result(task, sent.id, args, kwargs, dt.datetime.now(dt.timezone.utc))
        with self._lock:
            self._sent[sent.id] = (task, result)
            while len(self._sent) > MAX_REMEMBERED:
                self._sent.popitem(last=False)
        api.task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> Any:
        """The newest state of a task this process enqueued.

        Raises:
            TaskResultDoesNotExist: not enqueued here (or forgotten).
        """
        api = tasks_api()
        with self._lock:
            found = self._sent.get(result_id)
        if found is None:
            raise api.TaskResultDoesNotExist(result_id)
        task, enqueued = found
        sent = AsyncResult(result_id, store=self.app().results)
        status = _STATUS.get(sent.state, "READY")
        result = self._result(task, result_id, enqueued.args, enqueued.kwargs, enqueued.enqueued_at)
        object.__setattr__(result, "status", api.TaskResultStatus[status])
        if status in ("SUCCESSFUL", "FAILED"):
            object.__setattr__(result, "finished_at", dt.datetime.now(dt.timezone.utc))
        if status == "SUCCESSFUL":
            object.__setattr__(result, "_return_value", sent.result)
        elif status == "FAILED":
            error = sent.result
            result.errors.append(
                api.TaskError(
                    exception_class_path=f"{type(error).__module__}.{type(error).__qualname__}",
                    traceback=sent.traceback or "",
                )
            )
        return result

    def _result(self, task: Any, result_id: str, args: Any, kwargs: Any, when: Any) -> Any:
        api = tasks_api()
        return api.TaskResult(
            task=task,
            id=result_id,
            status=api.TaskResultStatus.READY,
            enqueued_at=when,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
