"""``@shared_task``: tasks of reusable code that must not import the project's app.

As Celery's ``shared_task``: the decorated function is bound to the *current*
app (the one made last) when it is first used, and registered with every app
that runs :meth:`~amqptasks.App.autodiscover_tasks`, so a worker knows it.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, overload

from amqptasks import _current
from amqptasks.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from amqptasks.task import P, R, Task

__all__ = ["SharedTask", "bind_shared", "shared_task"]

_shared: list[SharedTask] = []
_lock = threading.Lock()


class SharedTask:
    """A task waiting for an app: attribute access binds it to the current app."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        self._fn = fn
        self._options = {"name": f"{fn.__module__}.{fn.__name__}", **options}
        self._bound: weakref.WeakKeyDictionary[Any, Task[Any, Any]] = weakref.WeakKeyDictionary()
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    @property
    def name(self) -> str:
        """The task's name (the same in every app)."""
        return str(self._options["name"])

    def __repr__(self) -> str:
        return f"<SharedTask {self.name}>"

    def for_app(self, app: Any) -> Task[Any, Any]:
        """This task registered with ``app`` (once per app)."""
        with _lock:
            task = self._bound.get(app)
            if task is None:
                task = app.task(**self._options)(self._fn)
                self._bound[app] = task
            return task

    def _task(self) -> Task[Any, Any]:
        app = _current.get_current()
        if app is None:
            raise ConfigError(f"shared task {self.name} was used before any amqptasks App was made")
        return self.for_app(app)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._task()(*args, **kwargs)

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return getattr(self._task(), attribute)


@overload
def shared_task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def shared_task(fn: None = None, /, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def shared_task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """``@shared_task`` or ``@shared_task(name=..., ...)``: a task for any app.

    Takes the options of ``@app.task``. The task behaves as the current app's
    task of that name (``delay``, ``apply_async``, ``s``, ...).

    Example:
        >>> # billing/tasks.py, in a reusable Django app
        >>> @shared_task
        ... def charge(order_id: int) -> None: ...
    """

    def make(func: Callable[..., Any]) -> Any:
        shared = SharedTask(func, options)
        with _lock:
            _shared.append(shared)
        return shared

    return make(fn) if fn is not None else make


def bind_shared(app: Any) -> None:
    """Register every shared task declared so far with ``app``."""
    with _lock:
        pending = list(_shared)
    for shared in pending:
        shared.for_app(app)
