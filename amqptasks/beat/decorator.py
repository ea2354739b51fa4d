"""``@periodic(schedule)``: declare a task's periodic entry where the task is defined."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from amqptasks.beat.entries import add_code_entry
from amqptasks.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

__all__ = ["periodic"]


def periodic(schedule: object, *, name: str | None = None, **options: Any) -> Callable[[T], T]:
    """Run the decorated task on ``schedule`` (above ``@app.task``).

    Takes the keywords of :meth:`App.add_periodic_task` (``args``, ``kwargs``,
    ``options``, ``queue``, ``expires``, ``timezone``, ``catch_up``, ...).

    Example:
        >>> @periodic(crontab(minute=0, hour=3), name="nightly")
        ... @app.task
        ... def nightly(): ...
    """

    def decorate(task: T) -> T:
        app = getattr(task, "app", None)
        if app is None or not isinstance(getattr(task, "name", None), str):
            raise ConfigError("@periodic goes above @app.task (it needs the task)")
        add_code_entry(app, schedule, task, name=name, **options)
        return task

    return decorate
