"""Typing Protocols and aliases shared across modules (no runtime behaviour).

They let a lower module name what it needs from a higher one without
importing it: a :class:`~amqptasks.task.Task` sends through its app, but
``task.py`` does not import ``app.py`` (which imports ``task.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from amqptasks.results.result import AsyncResult


class TaskSender(Protocol):
    """What a :class:`~amqptasks.task.Task` needs from its app: a way to send a call.

    :class:`~amqptasks.App` is one. ``options`` are the call's resolved options
    (task name, arguments, task defaults and :class:`~amqptasks.PublishOptions`).
    """

    main: str

    def _send(self, options: dict[str, Any]) -> AsyncResult:
        """Publish the call and wait for the broker's confirm."""
        ...

    async def _asend(self, options: dict[str, Any]) -> AsyncResult:
        """Async twin of :meth:`_send`."""
        ...
