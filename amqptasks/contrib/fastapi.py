"""FastAPI integration: an app owned by the lifespan, ``await task.adelay()``, result dependency.

::

    from fastapi import FastAPI
    from amqptasks.contrib.fastapi import TaskResult, lifespan

    from proj.amqptasks import app, build_report

    api = FastAPI(lifespan=lifespan(app))

    @api.post("/reports")
    async def start(month: str) -> dict[str, str]:
        result = await build_report.adelay(month)   # aio-pika: the loop never blocks
        return {"id": result.id}

    @api.get("/reports/{task_id}")
    async def report(result: TaskResult) -> dict[str, object]:
        return await result_body(result)

The async producer connection belongs to the server's event loop: the lifespan
makes it as the server starts (a broker that cannot be reached fails the
start-up, not the first request) and closes it on shutdown. Results come back
to the process that sent the task (its reply queue), so read them in the same
server process (or use ``ignore_result`` and store what you need).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from amqptasks.results.result import AsyncResult

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from fastapi import FastAPI

    from amqptasks.app import App

__all__ = ["TaskResult", "get_app", "lifespan", "result_body", "task_result"]


def lifespan(app: App) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """A FastAPI ``lifespan``: ``app`` connected at start-up, closed at shutdown.

    The app is also ``request.app.state.amqptasks`` (what :func:`get_app` returns).
    """

    @contextlib.asynccontextmanager
    async def run(api: FastAPI) -> AsyncIterator[None]:
        api.state.amqptasks = app
        await app.aconnect()
        try:
            yield
        finally:
            await app.aclose()

    return run


def get_app(request: Request) -> App:
    """Dependency: the amqptasks App of this FastAPI app's lifespan."""
    app: App = request.app.state.amqptasks
    return app


def task_result(task_id: str, app: Annotated[Any, Depends(get_app)]) -> AsyncResult:
    """Dependency: the result of ``task_id`` (a path or query parameter), sent from here."""
    return AsyncResult(task_id, store=app.results)


#: ``result: TaskResult`` in a path operation with a ``{task_id}`` parameter.
TaskResult = Annotated[AsyncResult, Depends(task_result)]


async def result_body(result: AsyncResult, wait: float = 0.0) -> dict[str, Any]:
    """``{"id", "state", "value"}`` for a JSON response; ``wait`` > 0 waits for a ready result.

    A failed task's value is its exception's ``Type: text``.
    """
    if wait > 0 and not result.ready():
        with contextlib.suppress(Exception):
            await result.aget(timeout=wait, propagate=False)
    value = result.result
    if isinstance(value, BaseException):
        value = f"{type(value).__name__}: {value}"
    return {"id": result.id, "state": result.state, "value": value}
