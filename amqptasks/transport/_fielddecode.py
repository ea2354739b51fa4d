"""A fast AMQP 0.9.1 field-table decoder: pika's results, with floats kept as floats.

pika's ``pika.data.decode_value`` turns AMQP floats and doubles (``f``, ``d``)
into integers (``long(unpack(">d"))``): a ``timelimit`` header of ``[None, 0.5]``
arrives as ``[None, 0]``. It is also the worker's second largest cost per
delivery after the frame parsing (a dozen ``struct`` calls with format strings
for the 16 headers of a Celery message). This decoder returns what pika returns
for every other type (strings decoded as UTF-8 where they can be, else bytes;
timestamps as aware UTC datetimes, or :class:`Timestamp` past year 9999, where
pika raises; decimals as ``Decimal``), dispatching on the type byte with
precompiled structs.

:func:`install` makes pika use it (``pika.data.decode_table``/``decode_value``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import struct
from typing import Any

import pika.data
import pika.exceptions

#: pika's own decoders, before :func:`install` (floats truncated to integers).
PIKA_DECODE_TABLE: Any = pika.data.decode_table
PIKA_DECODE_VALUE: Any = pika.data.decode_value

_u32 = struct.Struct(">I").unpack_from
_i64 = struct.Struct(">q").unpack_from
_i32 = struct.Struct(">i").unpack_from
_u64 = struct.Struct(">Q").unpack_from
_f64 = struct.Struct(">d").unpack_from
_f32 = struct.Struct(">f").unpack_from
_i16 = struct.Struct(">h").unpack_from
_u16 = struct.Struct(">H").unpack_from
_i8 = struct.Struct(">b").unpack_from

#: Fixed-size numbers: type byte -> (unpack, size).
_NUMBERS: dict[int, tuple[Any, int]] = {
    ord("I"): (_i32, 4),
    ord("i"): (_u32, 4),
    ord("L"): (_i64, 8),
    ord("l"): (_i64, 8),
    ord("d"): (_f64, 8),
    ord("f"): (_f32, 4),
    ord("U"): (_i16, 2),
    ord("s"): (_i16, 2),
    ord("u"): (_u16, 2),
    ord("b"): (_i8, 1),
}
#: The last second a datetime can hold (9999-12-31T23:59:59Z).
_MAX_TIMESTAMP = 253402300799


class Timestamp(int):
    """An AMQP timestamp too far ahead for a ``datetime``: seconds since 1970.

    Read instead of failing the whole delivery (pika's decoder raises), and
    written back as a timestamp (``T``), so a re-published message keeps it.
    """

    __slots__ = ()


_S, _V, _T, _A, _F, _X, _B, _D, _TS = (ord(c) for c in "SVtAFxBDT")


def _text(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf8")
    except UnicodeDecodeError:
        return raw


def decode_table(encoded: bytes, offset: int) -> tuple[dict[Any, Any], int]:
    """Drop-in for ``pika.data.decode_table``: the table at ``offset``, and the end offset."""
    size = _u32(encoded, offset)[0]
    offset += 4
    limit = offset + size
    result: dict[Any, Any] = {}
    while offset < limit:
        length = encoded[offset]
        offset += 1
        key = _text(encoded[offset : offset + length])
        offset += length
        result[key], offset = decode_value(encoded, offset)
    return result, offset


def decode_value(encoded: bytes, offset: int) -> tuple[Any, int]:
    """Drop-in for ``pika.data.decode_value``, floats and doubles as floats."""
    kind = encoded[offset]
    offset += 1
    if kind == _S:
        length = _u32(encoded, offset)[0]
        offset += 4
        return _text(encoded[offset : offset + length]), offset + length
    if kind == _V:
        return None, offset
    if kind == _T:
        return bool(encoded[offset]), offset + 1
    number = _NUMBERS.get(kind)
    if number is not None:
        unpack, size = number
        return unpack(encoded, offset)[0], offset + size
    if kind == _A:
        length = _u32(encoded, offset)[0]
        offset += 4
        end = offset + length
        values = []
        while offset < end:
            value, offset = decode_value(encoded, offset)
            values.append(value)
        return values, offset
    if kind == _F:
        return decode_table(encoded, offset)
    if kind == _X:
        length = _u32(encoded, offset)[0]
        offset += 4
        return encoded[offset : offset + length], offset + length
    if kind == _B:
        return encoded[offset], offset + 1
    if kind == _D:
        decimals = encoded[offset]
        raw = _i32(encoded, offset + 1)[0]
        return decimal.Decimal(raw) * (decimal.Decimal(10) ** -decimals), offset + 5
    if kind == _TS:
        seconds = _u64(encoded, offset)[0]
        if seconds > _MAX_TIMESTAMP:  # past 9999-12-31: datetime cannot hold it
            return Timestamp(seconds), offset + 8
        return dt.datetime.fromtimestamp(seconds, dt.timezone.utc), offset + 8
    raise pika.exceptions.InvalidFieldTypeException(bytes([kind]))


def install() -> None:
    """Make pika decode field tables (message headers, arguments) with this module."""
    pika.data.decode_table = decode_table
    pika.data.decode_value = decode_value
