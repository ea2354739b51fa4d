"""How one task call ended (a value object shared by the pools and the handler)."""

from __future__ import annotations

import traceback as tb
from dataclasses import dataclass
from typing import Any

from amqptasks.results import states


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a call ended: SUCCESS with a value, or FAILURE with an exception."""

    status: str
    value: Any = None
    exception: BaseException | None = None
    traceback: str | None = None

    @classmethod
    def success(cls, value: Any) -> Outcome:
        """The call returned ``value``."""
        return cls(states.SUCCESS, value=value)

    @classmethod
    def failure(cls, exc: BaseException, traceback: str | None = None) -> Outcome:
        """The call raised ``exc`` (``traceback`` defaults to the one being handled)."""
        if traceback is None:
            traceback = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
        return cls(states.FAILURE, exception=exc, traceback=traceback)
