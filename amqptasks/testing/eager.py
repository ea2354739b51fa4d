"""Eager mode for one test or one block: tasks run in-process, no broker needed.

Example:
    >>> with eager_mode(app):  # doctest: +SKIP
    ...     assert add.delay(2, 3).get() == 5
"""

from __future__ import annotations

import contextlib
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from amqptasks.app import App


@contextlib.contextmanager
def eager_mode(app: App, *, propagates: bool = True) -> Iterator[App]:
    """Turn on ``task_always_eager`` (and ``task_eager_propagates``) for a block.

    The settings they had before come back when the block ends.

    Args:
        app: The app whose tasks should run eagerly.
        propagates: A failing task raises at ``delay()`` (``task_eager_propagates``).

    Yields:
        ``app``.
    """
    before = types.SimpleNamespace(
        task_always_eager=app.settings.task_always_eager,
        task_eager_propagates=app.settings.task_eager_propagates,
    )
    app.config_from_object(
        types.SimpleNamespace(task_always_eager=True, task_eager_propagates=propagates)
    )
    try:
        yield app
    finally:
        app.config_from_object(before)
