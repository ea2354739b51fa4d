"""amqptasks' AMQP field-table decoder returns what pika's does, floats as floats."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import random
import struct
from typing import Any

import pika.data
import pika.exceptions
import pytest

from amqptasks.transport import _fielddecode, _pika  # noqa: F401  (installs both)
from amqptasks.transport._fielddecode import PIKA_DECODE_TABLE, PIKA_DECODE_VALUE
from amqptasks.transport._fieldtable import table_bytes
from tests.unit.test_table_encoder import TABLES, _random_table


def _pika_decode(data: bytes) -> tuple[dict[Any, Any], int]:
    """pika's own decoder (it looks ``decode_value`` up in its module at each call)."""
    installed = pika.data.decode_table, pika.data.decode_value
    pika.data.decode_table, pika.data.decode_value = PIKA_DECODE_TABLE, PIKA_DECODE_VALUE
    try:
        decoded: tuple[dict[Any, Any], int] = PIKA_DECODE_TABLE(data, 0)
        return decoded
    finally:
        pika.data.decode_table, pika.data.decode_value = installed


def _without_floats(value: Any) -> Any:
    if isinstance(value, float):
        return None
    if isinstance(value, list):
        return [_without_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _without_floats(v) for k, v in value.items()}
    return value


def _decode(data: bytes) -> tuple[dict[Any, Any], int]:
    return _fielddecode.decode_table(data, 0)


@pytest.mark.parametrize("table", [_without_floats(t) for t in TABLES if t is not None])
def test_same_values_as_pika(table: Any) -> None:
    data = table_bytes(table)
    assert _decode(data) == _pika_decode(data)


def test_same_values_as_pika_for_random_tables() -> None:
    rng = random.Random(4321)
    for _ in range(300):
        data = table_bytes(_without_floats(_random_table(rng)))
        ours, end = _decode(data)
        assert (ours, end) == _pika_decode(data)
        assert end == len(data)


def test_every_amqp_type_as_pika_decodes_it() -> None:
    """Types amqptasks never writes but a peer may (RabbitMQ's own, py-amqp, Java)."""
    items = [
        (b"b", struct.pack(">b", -5)),
        (b"B", struct.pack(">B", 250)),
        (b"U", struct.pack(">h", -300)),
        (b"u", struct.pack(">H", 65000)),
        (b"s", struct.pack(">h", -2)),
        (b"I", struct.pack(">i", -70000)),
        (b"i", struct.pack(">I", 4_000_000_000)),
        (b"l", struct.pack(">q", -(2**40))),
        (b"L", struct.pack(">q", 2**40)),
        (b"D", struct.pack(">Bi", 2, 12345)),
        (b"T", struct.pack(">Q", 1_700_000_000)),
        (b"x", struct.pack(">I", 3) + b"\x00\xff\x01"),
        (b"S", struct.pack(">I", 2) + b"\xff\xfe"),  # not UTF-8: bytes, as pika
        (b"t", b"\x01"),
        (b"V", b""),
    ]
    body = b"".join(
        bytes([len(f"k{i}")]) + f"k{i}".encode() + t + v for i, (t, v) in enumerate(items)
    )
    data = struct.pack(">I", len(body)) + body
    ours = _decode(data)
    assert ours == _pika_decode(data)
    table = ours[0]
    assert table["k9"] == decimal.Decimal("123.45")
    assert table["k10"] == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc)
    assert table["k12"] == b"\xff\xfe"


def test_floats_and_doubles_stay_floats() -> None:
    """pika truncates them (``timelimit: [None, 0.5]`` became ``[None, 0]``)."""
    data = table_bytes({"timelimit": [None, 0.5], "ratio": -2.25, "big": 1e300})
    assert _decode(data)[0] == {"timelimit": [None, 0.5], "ratio": -2.25, "big": 1e300}
    assert _pika_decode(data)[0]["timelimit"] == [None, 0]  # the bug worked around
    single = struct.pack(">I", 7) + b"\x01ff" + struct.pack(">f", 1.5)
    value = _decode(single)[0]["f"]
    assert isinstance(value, float) and math.isclose(value, 1.5)


def test_an_unknown_type_is_refused_as_pika_does() -> None:
    data = struct.pack(">I", 3) + b"\x01kZ"
    with pytest.raises(pika.exceptions.InvalidFieldTypeException):
        _decode(data)


def test_pika_uses_it_once_amqptasks_transport_is_imported() -> None:
    assert pika.data.decode_table is _fielddecode.decode_table
    assert pika.data.decode_value is _fielddecode.decode_value
