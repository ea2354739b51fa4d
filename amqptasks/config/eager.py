"""Eager mode: ``.delay()`` runs the task in-process (for tests; no broker)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from amqptasks.config._group import SettingsGroup
from amqptasks.config._parse import parse_bool

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


@dataclass(frozen=True)
class EagerSettings(SettingsGroup):
    """Celery's ``task_always_eager`` and ``task_eager_propagates``, for test suites."""

    #: ``delay()``/``apply_async()`` of a registered task run it here and now, through
    #: the same serialization round trip and retries as a worker, with no broker.
    task_always_eager: bool = False
    #: In eager mode, a task that fails for good raises at the ``delay()`` call
    #: (otherwise its result is FAILURE and ``get()`` raises).
    task_eager_propagates: bool = False

    ENV_PARSERS: ClassVar[Mapping[str, Callable[[str], Any]]] = {
        "task_always_eager": parse_bool,
        "task_eager_propagates": parse_bool,
    }
