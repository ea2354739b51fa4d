"""Encode and decode result messages in Celery's rpc backend format.

A result message is published to the default exchange with the routing key
``reply_to`` and ``correlation_id`` = task id; its body is::

    {"task_id": ..., "status": "SUCCESS", "result": <value or exception>,
     "traceback": <str or null>, "children": [], "date_done": <iso8601>}

An exception is ``{"exc_type": "ValueError", "exc_message": [args...],
"exc_module": "builtins"}``.
"""

from __future__ import annotations

import builtins
import datetime as dt
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from amqptasks import exceptions
from amqptasks.exceptions import DecodeError, RemoteTaskError
from amqptasks.results import states


@dataclass(frozen=True, slots=True)
class ResultMeta:
    """What the worker said about a task."""

    task_id: str
    status: str
    result: Any = None
    traceback: str | None = None
    children: list[Any] = field(default_factory=list)
    date_done: str | None = None


def encode_exception(exc: BaseException) -> dict[str, Any]:
    """Describe ``exc`` the way Celery's json result serializer does."""
    args: list[Any] = []
    for arg in exc.args:
        args.append(arg if isinstance(arg, str | int | float | bool | type(None)) else repr(arg))
    return {
        "exc_type": type(exc).__qualname__,
        "exc_message": args,
        "exc_module": type(exc).__module__,
    }


def encode_result(
    task_id: str,
    status: str,
    result: Any = None,
    *,
    traceback: str | None = None,
    exception: BaseException | None = None,
) -> dict[str, Any]:
    """The body of a result message for ``task_id``."""
    return {
        "task_id": task_id,
        "status": status,
        "result": encode_exception(exception) if exception is not None else result,
        "traceback": traceback,
        "children": [],
        "date_done": dt.datetime.now(dt.timezone.utc).isoformat()
        if status in states.READY_STATES
        else None,
    }


def decode_result(payload: Any) -> ResultMeta:
    """Parse a result message body (already deserialized).

    Raises:
        DecodeError: when the payload is not a result mapping.
    """
    if not isinstance(payload, Mapping) or "task_id" not in payload or "status" not in payload:
        raise DecodeError(f"not a result message: {str(payload)[:200]!r}")
    return ResultMeta(
        task_id=str(payload["task_id"]),
        status=str(payload["status"]),
        result=payload.get("result"),
        traceback=payload.get("traceback"),
        children=list(payload.get("children") or []),
        date_done=payload.get("date_done"),
    )


def _find_exception_type(name: str, module: str) -> type[BaseException] | None:
    candidate: Any
    if module == "builtins":
        candidate = builtins
    elif module == exceptions.__name__:
        candidate = exceptions
    else:
        # Only types whose module this process already imported: decoding a
        # result must never import code named by the sender.
        candidate = sys.modules.get(module)
    # ``exc_type`` is a __qualname__ (we and Celery write it so): "Outer.Inner".
    for part in name.split("."):
        if candidate is None:
            break
        candidate = getattr(candidate, part, None)
    if isinstance(candidate, type) and issubclass(candidate, BaseException):
        return candidate
    return None


def rebuild_exception(
    value: Any, traceback: str | None, *, skip_init: bool = False
) -> BaseException:
    """Turn an encoded exception back into an exception instance.

    The type is rebuilt when it is a builtin, an amqptasks error or defined in an
    already imported module; otherwise a :class:`RemoteTaskError` carrying the
    type name is returned. The remote traceback is kept in ``remote_traceback``
    and, on Python 3.11+, added as a note so that it is printed.

    ``skip_init``: make the instance without calling the type's ``__init__``,
    its ``args`` set to what was sent (an exception described by a process of
    the same code, whose constructor wants other arguments than its ``args``).
    """
    if not isinstance(value, Mapping) or "exc_type" not in value:
        exc: BaseException = RemoteTaskError(repr(value), exc_type="UnknownError")
    else:
        name = str(value["exc_type"])
        module = str(value.get("exc_module") or "builtins")
        raw_args = value.get("exc_message")
        args = list(raw_args) if isinstance(raw_args, list | tuple) else [raw_args]
        exc_type = _find_exception_type(name, module)
        exc = RemoteTaskError(", ".join(str(a) for a in args), exc_type=name, exc_module=module)
        if exc_type is not None and skip_init:
            try:
                exc = exc_type.__new__(exc_type)
                exc.args = tuple(args)
            except Exception:  # an exotic __new__
                pass
        elif exc_type is not None:
            try:
                exc = exc_type(*args)
            except Exception:  # its __init__ wants other arguments
                if exc_type.__module__ == exceptions.__name__:
                    # Keep our type, with the message as it was sent.
                    exc = exc_type.__new__(exc_type)
                    Exception.__init__(exc, *args)
    exc.remote_traceback = traceback  # type: ignore[attr-defined]
    if traceback and hasattr(exc, "add_note"):
        exc.add_note("Remote traceback:\n" + traceback.rstrip())
    return exc
