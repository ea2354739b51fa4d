"""Where plain-function tasks run: threads, child processes, or one thread (solo).

``async def`` tasks always run on the worker's event loop (:mod:`.aio`),
whatever the pool; the pool only decides about plain functions:

=============  =====================================================================
``threads``    a thread per concurrency slot
``processes``  a child process per concurrency slot (spawned; imports the app)
``asyncio``    for apps of ``async def`` tasks: plain functions in at most 8 threads
``solo``       one task at a time, in one dedicated thread (the loop never blocks)
=============  =====================================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amqptasks.exceptions import ConfigError
from amqptasks.worker.pools.base import ExecutionPool
from amqptasks.worker.pools.threads import ThreadPool

if TYPE_CHECKING:
    from amqptasks.app import App

#: Threads for plain functions under the ``asyncio`` pool, at most.
ASYNCIO_POOL_THREADS = 8


def make_pool(
    name: str,
    concurrency: int,
    *,
    app: App,
    app_path: str | None = None,
    max_tasks_per_child: int | None = None,
    max_memory_per_child: int | None = None,
) -> ExecutionPool:
    """The pool called ``name``, sized for ``concurrency``.

    Raises:
        ConfigError: an unknown pool, or a ``processes`` pool for an app that
            other processes cannot import.
    """
    if name == "threads":
        return ThreadPool(concurrency, name="threads", queues_ahead=True)
    if name == "solo":
        return ThreadPool(1, name="solo", queues_ahead=True)
    if name == "asyncio":
        return ThreadPool(min(concurrency, ASYNCIO_POOL_THREADS), name="asyncio")
    if name == "processes":
        from amqptasks._appref import find_app_path
        from amqptasks.worker.pools.processes import ProcessPool

        path = app_path or find_app_path(app)
        if path is None:
            raise ConfigError(
                f"the processes pool needs the app's import path (module:attribute) for its "
                f"children, and {app!r} is not a module-level name of an importable module; "
                f"pass app_path= (the CLI passes -A)"
            )
        return ProcessPool(
            concurrency,
            app_path=path,
            max_tasks_per_child=max_tasks_per_child,
            max_memory_per_child=max_memory_per_child,
        )
    raise ConfigError(f"pool must be threads, processes, asyncio or solo, got {name!r}")


__all__ = ["ExecutionPool", "ThreadPool", "make_pool"]
