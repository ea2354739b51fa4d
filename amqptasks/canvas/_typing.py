"""What canvas needs from an app (structural: canvas sits beside, not above, ``App``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import contextlib

    from amqptasks.config import Settings
    from amqptasks.results.buffer import ResultBuffer
    from amqptasks.results.result import AsyncResult
    from amqptasks.routing import Router


class CanvasApp(Protocol):
    """The parts of :class:`~amqptasks.App` that signatures use to send themselves."""

    main: str
    #: The app's task registry (``find``/``get`` by name).
    tasks: Any
    results: ResultBuffer

    @property
    def settings(self) -> Settings: ...

    @property
    def router(self) -> Router: ...

    def _named_call(
        self, name: str, args: Any, kwargs: Any, options: dict[str, Any]
    ) -> dict[str, Any]: ...

    def _send(self, options: dict[str, Any]) -> AsyncResult: ...

    async def _asend(self, options: dict[str, Any]) -> AsyncResult: ...

    def batch(self) -> contextlib.AbstractContextManager[None]: ...

    def _reply_queue(self) -> str: ...

    async def _areply_queue(self) -> str: ...
