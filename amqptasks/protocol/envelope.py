"""Celery message protocol v2: build task messages and parse them back.

A task message is::

    properties: correlation_id=<task id>, content_type, content_encoding,
                reply_to (optional), priority (optional), delivery_mode=2
    headers:    lang, task, id, root_id, parent_id, group, group_index, shadow, eta,
                expires, retries, timelimit ([hard, soft]), argsrepr, kwargsrepr,
                origin, ignore_result, compression (when compressed)
    body:       [args, kwargs, {"callbacks", "errbacks", "chain", "chord"}]

See https://docs.celeryq.dev/en/stable/internals/protocol.html. Our own
extensions live in ``x-amqptasks-*`` headers and are ignored by Celery.
"""

from __future__ import annotations

import os
import random
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amqptasks import constants
from amqptasks.exceptions import ConfigError, DecodeError
from amqptasks.protocol import compression, serializers

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: Longest ``argsrepr``/``kwargsrepr`` we write, as Celery truncates too.
REPR_LIMIT = 1024

#: The body's third element when a call carries no workflow (Celery writes all four keys).
_EMPTY_EMBED: Mapping[str, Any] = {
    "callbacks": None,
    "errbacks": None,
    "chain": None,
    "chord": None,
}


def _embed(given: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not given:
        return _EMPTY_EMBED
    unknown = sorted(set(given) - set(_EMPTY_EMBED))
    if unknown:
        raise ConfigError(
            f"embed may only hold {', '.join(_EMPTY_EMBED)}; got {', '.join(map(repr, unknown))}"
        )
    return {**_EMPTY_EMBED, **given}


_origin: str | None = None


def _forget_origin() -> None:
    global _origin
    _origin = None


os.register_at_fork(after_in_child=_forget_origin)


def default_origin() -> str:
    """``pid@hostname``, the ``origin`` header of messages sent by this process."""
    global _origin
    if _origin is None:  # cached: gethostname is a system call, and costly in sandboxes
        _origin = f"{os.getpid()}@{socket.gethostname()}"
    return _origin


# What uuid.UUID(int=..., version=4) clears and sets: the variant and version bits.
_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)


def new_task_id() -> str:
    """A random (version 4) UUID string for a new task.

    Drawn from :mod:`random` (reseeded in forked children) rather than
    ``os.urandom``: ids must be unique, not secret, and a system call per
    message is a measurable cost when publishing thousands per second. Formatted
    by hand: ``str(uuid.UUID(int=bits, version=4))`` gives the same text, slower.
    """
    digits = f"{random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= REPR_LIMIT else text[: REPR_LIMIT - 3] + "..."


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message ready for any transport: where it goes and its AMQP properties."""

    exchange: str
    routing_key: str
    body: bytes
    content_type: str
    content_encoding: str
    headers: dict[str, Any]
    message_id: str
    correlation_id: str | None = None
    reply_to: str | None = None
    priority: int | None = None
    delivery_mode: int = constants.PERSISTENT
    expiration: str | None = None


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """A decoded task message (what a worker needs to run it)."""

    task: str
    id: str
    args: list[Any]
    kwargs: dict[str, Any]
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    retries: int = 0
    eta: str | None = None
    expires: str | None = None
    #: ``(soft, hard)`` seconds; the header carries them the other way round, as Celery does.
    timelimit: tuple[float | None, float | None] = (None, None)
    origin: str | None = None
    ignore_result: bool = False
    reply_to: str | None = None
    correlation_id: str | None = None
    embed: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, Any] = field(default_factory=dict)


def build_task_message(
    *,
    task: str,
    task_id: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    exchange: str,
    routing_key: str,
    serializer: str = constants.DEFAULT_SERIALIZER,
    compression_method: str | None = None,
    reply_to: str | None = None,
    priority: int | None = None,
    root_id: str | None = None,
    parent_id: str | None = None,
    group: str | None = None,
    group_index: int | None = None,
    retries: int = 0,
    eta: str | None = None,
    expires: str | None = None,
    timelimit: tuple[float | None, float | None] = (None, None),
    ignore_result: bool = False,
    origin: str | None = None,
    extra_headers: Mapping[str, Any] | None = None,
    embed: Mapping[str, Any] | None = None,
) -> OutgoingMessage:
    """Encode one task call as a Celery v2 message.

    ``timelimit`` is ``(soft, hard)`` seconds; the header lists them as Celery
    does, ``[hard, soft]``. ``embed`` is the body's third element, what runs
    after the task (Celery's ``callbacks``, ``errbacks``, ``chain``, ``chord``,
    as serialized signatures); keys not given are written as None.

    Raises:
        ConfigError: for an unknown serializer or compression name, or embed key.
        TypeError: when the arguments cannot be serialized.
    """
    info = serializers.by_name(serializer)
    args_list = list(args)
    kwargs_dict = dict(kwargs)
    body = info.serializer.dumps([args_list, kwargs_dict, _embed(embed)])
    args_tuple = args if type(args) is tuple else tuple(args_list)
    headers: dict[str, Any] = {
        "lang": constants.LANG,
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": eta,
        "expires": expires,
        "group": group,
        "group_index": group_index,
        "retries": retries,
        # Celery writes [hard, soft] (as_task_v2: [time_limit, soft_time_limit]).
        "timelimit": [timelimit[1], timelimit[0]],
        "root_id": root_id or task_id,
        "parent_id": parent_id,
        "argsrepr": _short_repr(args_tuple),  # Celery shows a tuple
        "kwargsrepr": _short_repr(kwargs_dict) if kwargs_dict else "{}",
        "origin": origin or default_origin(),
        "ignore_result": ignore_result,
    }
    if compression_method:
        method = compression.codec(compression_method)
        body = method.compress(body)
        headers["compression"] = method.content_type
    if extra_headers:
        clash = sorted(set(extra_headers) & set(headers))
        if clash:
            raise ConfigError(
                f"headers= may not set protocol header(s) {', '.join(clash)}; use the "
                f"matching apply_async option instead"
            )
        headers.update(extra_headers)
    return OutgoingMessage(
        exchange=exchange,
        routing_key=routing_key,
        body=body,
        content_type=info.content_type,
        content_encoding=info.content_encoding,
        headers=headers,
        message_id=task_id,
        correlation_id=task_id,
        reply_to=reply_to,
        priority=priority,
    )


def _optional_str(headers: Mapping[str, Any], key: str) -> str | None:
    value = headers.get(key)
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def parse_task_message(
    body: bytes,
    *,
    headers: Mapping[str, Any] | None,
    content_type: str | None,
    accept_content: tuple[str, ...],
    reply_to: str | None = None,
    correlation_id: str | None = None,
) -> TaskMessage:
    """Decode a delivered Celery v2 task message.

    Raises:
        DecodeError: when headers are missing, the content type is not accepted,
            the body is corrupt, or it is not ``[args, kwargs, embed]``.
    """
    headers = headers or {}
    task = _optional_str(headers, "task")
    task_id = _optional_str(headers, "id") or correlation_id
    if not task or not task_id:
        raise DecodeError(
            "not a Celery v2 task message: headers 'task' and 'id' are required",
            raw=body,
            content_type=content_type or "",
        )
    info = serializers.decoder_for(content_type, accept_content)
    method = headers.get("compression")
    if method:
        body = compression.decompress(body, str(method))
    try:
        payload = info.serializer.loads(body)
    except Exception as exc:  # every decoder has its own error types
        raise DecodeError(
            f"cannot decode {info.name} body of task {task!r} ({task_id}): {exc}",
            raw=body,
            content_type=content_type or "",
        ) from exc
    if not (isinstance(payload, list | tuple) and len(payload) == 3):
        raise DecodeError(
            f"body of task {task!r} ({task_id}) is not [args, kwargs, embed]",
            raw=body,
            content_type=content_type or "",
        )
    args, kwargs, embed = payload
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        raise DecodeError(
            f"body of task {task!r} ({task_id}): args must be a list and kwargs a mapping",
            raw=body,
            content_type=content_type or "",
        )
    raw_limit = headers.get("timelimit") or (None, None)
    hard, soft = ([*list(raw_limit), None, None])[:2]  # on the wire: [hard, soft]
    return TaskMessage(
        task=task,
        id=task_id,
        args=list(args),
        kwargs=kwargs,
        root_id=_optional_str(headers, "root_id"),
        parent_id=_optional_str(headers, "parent_id"),
        group=_optional_str(headers, "group"),
        retries=int(headers.get("retries") or 0),
        eta=_optional_str(headers, "eta"),
        expires=_optional_str(headers, "expires"),
        timelimit=(soft, hard),
        origin=_optional_str(headers, "origin"),
        ignore_result=bool(headers.get("ignore_result", False)),
        reply_to=reply_to,
        correlation_id=correlation_id or task_id,
        embed=embed or {},
        headers=headers,
    )
