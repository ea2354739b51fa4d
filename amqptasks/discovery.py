"""Import the task modules of a list of packages (``app.autodiscover_tasks``)."""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import ConfigError
from amqptasks.shared import bind_shared

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence


def import_related(packages: Iterable[str], related_name: str = "tasks") -> list[str]:
    """Import ``<package>.<related_name>`` for each package that has one.

    A package without that module is skipped; an error raised while importing
    one that exists is not hidden.

    Returns:
        The names of the modules imported.

    Raises:
        ConfigError: a package cannot be imported.
    """
    imported = []
    for package in packages:
        name = f"{package}.{related_name}"
        try:
            found = importlib.util.find_spec(name)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"autodiscover_tasks: cannot import {package!r}: {exc}") from None
        if found is None:
            continue
        importlib.import_module(name)
        imported.append(name)
    return imported


def loader(app: Any, packages: Sequence[str] | None, related_name: str) -> Callable[[], None]:
    """What ``app.autodiscover_tasks`` leaves for the registry to call on first read.

    It imports the task modules (of Django's installed apps without
    ``packages``), then registers the :func:`~amqptasks.shared.shared_task`
    tasks with ``app``.
    """

    def load() -> None:
        names: Sequence[str]
        if packages is None:
            from amqptasks.contrib.django.discovery import installed_apps

            names = installed_apps()
        else:
            names = packages
        import_related(names, related_name)
        bind_shared(app)

    return load
