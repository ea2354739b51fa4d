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

import datetime as dt
import decimal
import math
import os
import random
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack

from amqptasks import constants
from amqptasks.exceptions import ConfigError, DecodeError
from amqptasks.protocol import compression, serializers

if TYPE_CHECKING:
    from collections.abc import Sequence

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


def _too_large(task: str, size: int, setting: str, limit: int) -> str:
    return (
        f"task {task}: the message body is {size} bytes, over {setting} ({limit}); "
        f"workers refuse it. Send less (a reference to the data, say) or raise {setting}"
    )


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
    max_message_size: int | None = None,
    max_inflated_size: int | None = None,
) -> OutgoingMessage:
    """Encode one task call as a Celery v2 message.

    ``timelimit`` is ``(soft, hard)`` seconds; the header lists them as Celery
    does, ``[hard, soft]``. ``embed`` is the body's third element, what runs
    after the task (Celery's ``callbacks``, ``errbacks``, ``chain``, ``chord``,
    as serialized signatures); keys not given are written as None.
    ``max_message_size`` and ``max_inflated_size`` are the settings of those
    names: a message a worker would refuse is not sent.

    Raises:
        ConfigError: for an unknown serializer or compression name, an embed key,
            or a body over ``max_message_size`` (or, compressed, over
            ``max_inflated_size`` before compression).
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
        if max_inflated_size is not None and len(body) > max_inflated_size:
            raise ConfigError(_too_large(task, len(body), "max_inflated_size", max_inflated_size))
        body = method.compress(body)
        headers["compression"] = method.content_type
    if max_message_size is not None and len(body) > max_message_size:
        raise ConfigError(_too_large(task, len(body), "max_message_size", max_message_size))
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


def _bad(text: str, body: bytes, content_type: str | None) -> DecodeError:
    return DecodeError(
        text, raw=body, content_type=content_type or "", reason=constants.REASON_BAD_MESSAGE
    )


def _text(value: Any, name: str) -> str:
    """A header as text: str as is, UTF-8 bytes decoded; anything else is refused."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            raise ValueError(f"header {name!r} is not UTF-8 text") from None
    raise ValueError(f"header {name!r} must be a string, got {type(value).__name__}")


def _optional_str(headers: Mapping[str, Any], key: str) -> str | None:
    value = headers.get(key)
    return None if value is None else _text(value, key)


def _when(headers: Mapping[str, Any], key: str) -> str | None:
    """An ISO 8601 instant (``eta``, ``expires``), checked to be one; an AMQP
    timestamp (a datetime) is accepted and written as ISO text."""
    value = headers.get(key)
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        moment = value
    else:
        text = _text(value, key)
        if not text:
            return None
        iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
        try:
            moment = dt.datetime.fromisoformat(iso)
        except ValueError:
            raise ValueError(f"header {key!r} is not an ISO 8601 time: {text[:64]!r}") from None
    try:  # naive means UTC; an offset that leaves the datetime range is refused
        aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
        aware.astimezone(dt.timezone.utc)
    except (OverflowError, ValueError):
        raise ValueError(f"header {key!r} is out of range: {str(value)[:64]!r}") from None
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def _retries(headers: Mapping[str, Any]) -> int:
    value = headers.get("retries")
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"header 'retries' must be an integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"header 'retries' must be >= 0, got {value}")
    return value


#: ``ignore_result`` as text (a header set by hand, or by a client that sends
#: everything as strings): these mean true or false; any other text is refused.
IGNORE_RESULT_TRUE = frozenset({"true", "1", "yes", "on"})
IGNORE_RESULT_FALSE = frozenset({"false", "0", "no", "off", ""})


def _flag(headers: Mapping[str, Any], key: str) -> bool:
    value = headers.get(key)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str | bytes | bytearray):
        lowered = _text(value, key).strip().lower()
        if lowered in IGNORE_RESULT_TRUE:
            return True
        if lowered in IGNORE_RESULT_FALSE:
            return False
    raise ValueError(f"header {key!r} must be true or false, got {str(value)[:64]!r}")


def _seconds(value: Any, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal):
        raise ValueError(f"header {key!r} must hold numbers of seconds, got {value!r}"[:200])
    number = float(value)
    if not 0 <= number < math.inf:  # also refuses NaN
        raise ValueError(f"header {key!r} must hold seconds >= 0, got {value}")
    return number or None  # 0 means no limit, as in Celery


def _timelimit(headers: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """``(soft, hard)`` from the wire's ``[hard, soft]``."""
    raw = headers.get("timelimit")
    if raw is None:
        return (None, None)
    if not isinstance(raw, list | tuple) or len(raw) > 2:
        raise ValueError(f"header 'timelimit' must be [hard, soft], got {str(raw)[:64]!r}")
    hard, soft = [*raw, None, None][:2]
    return (_seconds(soft, "timelimit"), _seconds(hard, "timelimit"))


def _describe(exc: BaseException) -> str:
    """An exception's text, or its type's name when it has none (msgpack's nesting error)."""
    text = str(exc)
    if isinstance(exc, msgpack.StackError):  # ValueError with no text
        return text or "nested too deeply"
    return text or type(exc).__name__


def parse_task_message(
    body: bytes,
    *,
    headers: Mapping[str, Any] | None,
    content_type: str | None,
    accept_content: tuple[str, ...],
    reply_to: str | None = None,
    correlation_id: str | None = None,
    max_inflated_size: int | None = None,
) -> TaskMessage:
    """Decode a delivered Celery v2 task message, checking every field a worker reads.

    Headers are checked before the body is inflated or decoded, so a message
    with bad headers costs little. ``ignore_result`` may be a boolean, 0/1, or
    text: ``true``/``1``/``yes``/``on`` and ``false``/``0``/``no``/``off``/empty
    (any case); anything else is refused rather than guessed.

    Raises:
        DecodeError: with ``reason`` ``bad-message`` when a header is missing or
            of the wrong type or value (``retries`` not an integer >= 0, ``eta``
            not a time, ...), ``decode-error`` when the content type is not
            accepted or the body is corrupt or not ``[args, kwargs, embed]``,
            ``too-large`` when it inflates past ``max_inflated_size``.
    """
    headers = headers or {}
    if type(headers) is not dict and not isinstance(headers, Mapping):
        raise _bad("headers are not a table", body, content_type)
    try:
        task = _optional_str(headers, "task")
        task_id = _optional_str(headers, "id") or correlation_id
        if not task or not task_id:
            raise ValueError("not a Celery v2 task message: headers 'task' and 'id' are required")
        label = f"task {task[:200]!r} ({task_id[:200]})"
        fields: dict[str, Any] = {
            "root_id": _optional_str(headers, "root_id"),
            "parent_id": _optional_str(headers, "parent_id"),
            "group": _optional_str(headers, "group"),
            "origin": _optional_str(headers, "origin"),
            "retries": _retries(headers),
            "eta": _when(headers, "eta"),
            "expires": _when(headers, "expires"),
            "timelimit": _timelimit(headers),
            "ignore_result": _flag(headers, "ignore_result"),
        }
        method = headers.get("compression")
        method = None if method is None else _text(method, "compression")
    except ValueError as exc:
        raise _bad(str(exc), body, content_type) from None
    info = serializers.decoder_for(content_type, accept_content)
    if method:
        body = compression.decompress(body, method, max_size=max_inflated_size)
    try:
        payload = info.serializer.loads(body)
    except Exception as exc:  # every decoder has its own error types
        raise DecodeError(
            f"cannot decode {info.name} body of {label}: {_describe(exc)}",
            raw=body,
            content_type=content_type or "",
        ) from exc
    if not (isinstance(payload, list | tuple) and len(payload) == 3):
        raise DecodeError(
            f"body of {label} is not [args, kwargs, embed]",
            raw=body,
            content_type=content_type or "",
        )
    args, kwargs, embed = payload
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        raise DecodeError(
            f"body of {label}: args must be a list and kwargs a mapping",
            raw=body,
            content_type=content_type or "",
        )
    # JSON object keys are always text; other serializers' may not be.
    keys_checked = info.name == "json"
    if kwargs and not keys_checked and not all(isinstance(key, str) for key in kwargs):
        raise DecodeError(
            f"body of {label}: kwargs names must be strings",
            raw=body,
            content_type=content_type or "",
        )
    if embed is not None and not (
        isinstance(embed, dict) and (keys_checked or all(isinstance(key, str) for key in embed))
    ):
        raise DecodeError(
            f"body of {label}: the third item (callbacks, errbacks, chain, chord) must be "
            f"a mapping or null, got {type(embed).__name__}",
            raw=body,
            content_type=content_type or "",
        )
    return TaskMessage(
        task=task,
        id=task_id,
        args=list(args),
        kwargs=kwargs,
        reply_to=reply_to,
        correlation_id=correlation_id or task_id,
        embed=embed or {},
        headers=headers,
        **fields,
    )


def parse_time(text: str | None) -> dt.datetime | None:
    """An aware datetime from an ISO 8601 header value (naive = UTC); None if absent/invalid."""
    if not text:
        return None
    if text.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not take "Z"
        text = text[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
