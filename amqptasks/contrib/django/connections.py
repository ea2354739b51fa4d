"""Database connections in the worker: closed when stale, before and after each task.

A worker is a long-lived process that Django's request cycle never reaches, so
``close_old_connections`` (what Django runs around each request) is run around
each task instead, in the thread or child process that runs it: a connection
past ``CONN_MAX_AGE``, left in a transaction, or broken (the database server
closed it) is dropped, and the task's first query opens a fresh one. Django's
connections belong to one thread each, and the ``processes`` pool starts its
children with ``spawn``, so no connection is ever shared with a pool child.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from amqptasks.request import call_wrappers

if TYPE_CHECKING:
    from collections.abc import Iterator

    from amqptasks.request import Request

__all__ = ["fresh_connections", "install"]


@contextlib.contextmanager
def fresh_connections(request: Request) -> Iterator[None]:
    """Drop unusable or obsolete connections of this thread before and after the task."""
    from django.db import close_old_connections

    close_old_connections()
    try:
        yield
    finally:
        close_old_connections()


def install() -> None:
    """Run :func:`fresh_connections` around every task this process runs (once)."""
    if fresh_connections not in call_wrappers:
        call_wrappers.append(fresh_connections)
