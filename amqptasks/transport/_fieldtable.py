"""A fast AMQP 0.9.1 field-table encoder, byte for byte what pika writes.

pika's ``pika.data.encode_table`` costs about 10 µs for the 16 headers of a
Celery v2 task message: a chain of ``isinstance`` tests, a ``struct.pack``
with a format string and several appends per value. This encoder dispatches on
the exact type of the usual header values (str, None, int, bool, list, dict,
float, bytes), keeps the encoded form of the keys it has seen, and joins each
table once. Anything else (subclasses, ``Decimal``, ``datetime``, ...) goes to
pika's own encoder, so the output is what pika produces for every table, except
that floats are AMQP doubles (``d``), which pika decodes but cannot encode:
Celery (py-amqp) sends them, e.g. in ``timelimit``, and that ``bytearray``
and ``memoryview`` are byte arrays (``x``) as ``bytes`` are (aio-pika's pamqp
takes only ``bytearray``).

The worker's aio-pika publisher encodes message headers with this module too
(:func:`amqptasks.transport.aio.to_aio_message`), so whatever
:mod:`amqptasks.transport._fielddecode` read from a delivery can be sent again
by either transport, and :func:`check_headers` tells a producer which header
the wire cannot carry.

:func:`install` makes pika use it (``pika.data.encode_table``/``encode_value``);
pika's functions stay in :data:`PIKA_ENCODE_TABLE` and :data:`PIKA_ENCODE_VALUE`.
"""

from __future__ import annotations

import math
import struct
from collections import abc
from typing import TYPE_CHECKING, Any

import pika.data
import pika.exceptions

from amqptasks.exceptions import ConfigError
from amqptasks.transport._fielddecode import Timestamp

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: pika's own encoders, before :func:`install` (as pika wrote them: no floats).
PIKA_ENCODE_TABLE: Callable[[list[bytes], Any], int] = pika.data.encode_table
PIKA_ENCODE_VALUE: Callable[[list[bytes], Any], int] = pika.data.encode_value

_length = struct.Struct(">I").pack
_typed_length = struct.Struct(">cI").pack
_int = struct.Struct(">ci").pack
_long = struct.Struct(">cq").pack
_double = struct.Struct(">cd").pack
_timestamp = struct.Struct(">cQ").pack
_INT_MIN = -(2**31)
_INT_MAX = 2**31 - 1

_VOID = b"V"

#: Table keys seen so far (header names: a few dozen): the key encoded, and the key
#: followed by a void value (half of a Celery message's headers are None).
_keys: dict[str, tuple[bytes, bytes]] = {}
_KEYS_KEPT = 4096


def pika_encode_value(pieces: list[bytes], value: Any) -> int:
    """pika's ``encode_value``, plus floats as AMQP doubles (``d``)."""
    if isinstance(value, float):
        pieces.append(_double(b"d", value))
        return 9
    encoded: int = PIKA_ENCODE_VALUE(pieces, value)
    return encoded


def _key(key: Any) -> tuple[bytes, bytes]:
    if type(key) is not str:
        pieces: list[bytes] = []
        pika.data.encode_short_string(pieces, key)
        encoded = b"".join(pieces)
        return encoded, encoded + _VOID
    data = key.encode()
    if len(data) > 255:
        raise pika.exceptions.ShortStringTooLong(data)
    encoded = bytes((len(data),)) + data
    entry = (encoded, encoded + _VOID)
    if len(_keys) < _KEYS_KEPT:
        _keys[key] = entry
    return entry


def _encode(append: Callable[[bytes], None], value: Any) -> None:
    kind = type(value)
    if kind is str:
        data = value.encode()
        append(_typed_length(b"S", len(data)))
        append(data)
    elif value is None:
        append(_VOID)
    elif kind is int:
        # pika: "I" when it fits 32 bits, else "l" (struct.error beyond 64 bits, as pika)
        append(_int(b"I", value) if _INT_MIN <= value <= _INT_MAX else _long(b"l", value))
    elif kind is bool:
        append(b"t\x01" if value else b"t\x00")
    elif kind is list:
        data = array_bytes(value)
        append(_typed_length(b"A", len(data)))
        append(data)
    elif kind is dict:
        data = table_items(value)
        append(_typed_length(b"F", len(data)))
        append(data)
    elif kind is float:
        append(_double(b"d", value))
    elif kind is bytes:
        append(_typed_length(b"x", len(value)))
        append(value)
    elif isinstance(value, bytearray | memoryview):  # what aio-pika (pamqp) takes as bytes
        data = bytes(value)
        append(_typed_length(b"x", len(data)))
        append(data)
    elif isinstance(value, Timestamp):  # a timestamp beyond datetime's range, kept as read
        append(_timestamp(b"T", value))
    else:  # subclasses, Decimal, datetime, unsupported types: pika decides
        pieces: list[bytes] = []
        pika_encode_value(pieces, value)
        append(b"".join(pieces))


def table_items(table: Mapping[Any, Any]) -> bytes:
    """The encoded key/value pairs of ``table``, without the table's length prefix.

    Raises:
        pika.exceptions.UnsupportedAMQPFieldException: a value AMQP cannot carry.
        pika.exceptions.ShortStringTooLong: a key longer than 255 bytes.
    """
    out: list[bytes] = []
    append = out.append
    keys = _keys
    for key, value in table.items():
        encoded_key, key_and_void = keys.get(key) or _key(key)
        if value is None:
            append(key_and_void)
        else:
            append(encoded_key)
            _encode(append, value)
    return b"".join(out)


def array_bytes(values: list[Any]) -> bytes:
    """The encoded values of an AMQP array, without its length prefix."""
    out: list[bytes] = []
    append = out.append
    for value in values:
        _encode(append, value)
    return b"".join(out)


def table_bytes(table: Mapping[Any, Any] | None) -> bytes:
    """``table`` encoded as an AMQP field table (with its length prefix)."""
    data = table_items(table) if table else b""
    return _length(len(data)) + data


def encode_table(pieces: list[bytes], table: Mapping[Any, Any] | None) -> int:
    """Drop-in for ``pika.data.encode_table``: append the table, return its size."""
    data = table_bytes(table)
    pieces.append(data)
    return len(data)


def encode_value(pieces: list[bytes], value: Any) -> int:
    """Drop-in for ``pika.data.encode_value``: append the value, return its size."""
    out: list[bytes] = []
    _encode(out.append, value)
    data = b"".join(out)
    pieces.append(data)
    return len(data)


def install() -> None:
    """Make pika encode field tables (message headers, arguments) with this module."""
    pika.data.encode_table = encode_table
    pika.data.encode_value = encode_value


def check_headers(headers: Mapping[Any, Any]) -> None:
    """Check that every header can travel in an AMQP field table.

    What it carries: ``str``, ``bytes``/``bytearray`` (byte arrays), ``None``,
    ``bool``, integers of 64 bits (signed), finite ``float`` (doubles), ``Decimal``
    (up to 9 digits and 255 decimal places), ``datetime`` from 1970 (whole
    seconds), and lists and dicts of these; keys are strings of up to 255 bytes.

    Raises:
        ConfigError: naming the first header that cannot be encoded, and why.
    """
    if not isinstance(headers, abc.Mapping):
        raise ConfigError(f"headers must be a dict, got {type(headers).__name__}")
    for key, value in headers.items():
        try:
            _check_finite(value)
            table_items({key: value})
        except (
            pika.exceptions.UnsupportedAMQPFieldException,
            pika.exceptions.ShortStringTooLong,
            struct.error,
            TypeError,
            ValueError,
            OverflowError,
            RecursionError,
        ) as exc:
            raise ConfigError(
                f"header {str(key)[:100]!r} cannot be sent in an AMQP message "
                f"({_why(exc)}); use a str, bytes, bool, None, a 64-bit int, float, "
                f"Decimal, datetime, or a list or dict of these"
            ) from None


def _check_finite(value: Any, depth: int = 0) -> None:
    """Refuse NaN and infinite doubles: AMQP can encode them, but RabbitMQ closes
    the whole connection (541 INTERNAL_ERROR) on a message that holds one."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} (RabbitMQ refuses NaN and infinite numbers)")
    if depth < 100 and isinstance(value, list | tuple):
        for item in value:
            _check_finite(item, depth + 1)
    elif depth < 100 and isinstance(value, abc.Mapping):
        for item in value.values():
            _check_finite(item, depth + 1)


def _why(exc: Exception) -> str:
    if isinstance(exc, pika.exceptions.UnsupportedAMQPFieldException):
        return f"it holds a {type(exc.args[-1]).__name__}" if exc.args else "unsupported type"
    if isinstance(exc, pika.exceptions.ShortStringTooLong):
        return "a key is over 255 bytes"
    if isinstance(exc, struct.error):
        return "a number or time out of range"
    return f"{type(exc).__name__}: {str(exc)[:200]}"
