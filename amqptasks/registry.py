"""Task name -> task."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import ConfigError, UnknownTask

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from amqptasks.task import Task


class TaskRegistry:
    """The tasks an app knows, by name."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._loaders: list[Callable[[], None]] = []

    def add_loader(self, loader: Callable[[], None]) -> None:
        """Call ``loader`` (which registers tasks) before the registry is next read.

        ``app.autodiscover_tasks()`` defers its imports this way: in a Django
        project the app is made while the settings are imported, before the
        installed apps can be.
        """
        self._loaders.append(loader)

    def _load(self) -> None:
        while self._loaders:
            self._loaders.pop(0)()

    def add(self, task: Task[Any, Any]) -> None:
        """Register ``task``.

        Raises:
            ConfigError: another task already has that name.
        """
        existing = self._tasks.get(task.name)
        if existing is not None and existing.fn is not task.fn:
            raise ConfigError(
                f"task name {task.name!r} is already registered by "
                f"{existing.fn.__module__}.{existing.fn.__qualname__}; "
                f"pass name= to tell them apart"
            )
        self._tasks[task.name] = task

    def get(self, name: str) -> Task[Any, Any]:
        """The task called ``name``.

        Raises:
            UnknownTask: with the closest registered names.
        """
        self._load()
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTask(
                name, difflib.get_close_matches(name, list(self._tasks), n=3)
            ) from None

    def unknown(self, name: str) -> UnknownTask:
        """The error for an unregistered ``name``, with the closest registered names."""
        self._load()
        return UnknownTask(name, difflib.get_close_matches(name, list(self._tasks), n=3))

    def find(self, name: str) -> Task[Any, Any] | None:
        """The task called ``name``, or None."""
        self._load()
        return self._tasks.get(name)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._tasks

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(sorted(self._tasks))

    def __len__(self) -> int:
        self._load()
        return len(self._tasks)
