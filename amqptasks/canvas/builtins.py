"""Celery's built-in workflow tasks a worker runs: ``celery.map`` and ``celery.starmap``.

``task.chunks(items, n)`` sends ``celery.starmap`` calls (as Celery does), so a
worker that runs chunks needs them; :class:`~amqptasks.worker.rules.canvas.Workflows`
registers them when the worker starts, unless the app has tasks of those names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping


MAP = "celery.map"
STARMAP = "celery.starmap"


def register_builtins(app: Any) -> None:
    """Register ``celery.map`` and ``celery.starmap`` on ``app`` (if it has neither name)."""
    registry: Any = app.tasks

    def _task(name: str) -> Any:
        return registry.get(name)

    def starmap(task: Mapping[str, Any], it: list[Any]) -> list[Any]:
        run = _task(str(task["task"]))
        return [run(*args) for args in it]

    def map_(task: Mapping[str, Any], it: list[Any]) -> list[Any]:
        run = _task(str(task["task"]))
        return [run(item) for item in it]

    for name, fn in ((STARMAP, starmap), (MAP, map_)):
        if registry.find(name) is None:
            app.task(name=name)(fn)
