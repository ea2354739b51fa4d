"""The request being executed, visible to task code and to nested publishes."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager


@dataclass(frozen=True)
class Request:
    """What a running task knows about its own call (``self.request`` in bound tasks)."""

    id: str
    task: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    reply_to: str | None = None
    correlation_id: str | None = None
    eta: str | None = None
    expires: str | None = None
    origin: str | None = None
    hostname: str | None = None
    queue: str | None = None
    redelivered: bool = False
    headers: dict[str, Any] = field(default_factory=dict)
    is_eager: bool = False


current_request: contextvars.ContextVar[Request | None] = contextvars.ContextVar(
    "amqptasks_current_request", default=None
)


#: Entered around every plain-function task body a worker runs, in the thread or
#: child process that runs it (Django's connection clean-up, Flask's app context).
#: Integrations append to it when they are set up in that process; each factory is
#: called with the request and must return a context manager.
call_wrappers: list[Callable[[Request], AbstractContextManager[object]]] = []
