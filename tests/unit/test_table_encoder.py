"""amqptasks' AMQP field-table encoder writes exactly what pika's does."""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import enum
import random
import struct
from typing import TYPE_CHECKING, Any

import pika.compat
import pika.data
import pika.exceptions
import pytest

from amqptasks.protocol.envelope import build_task_message
from amqptasks.transport import _fieldtable
from amqptasks.transport._fieldtable import (
    PIKA_ENCODE_TABLE,
    encode_table,
    encode_value,
    pika_encode_value,
    table_bytes,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def pika_original(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """pika's own encoders (floats as doubles added), for the reference bytes."""
    monkeypatch.setattr(pika.data, "encode_table", PIKA_ENCODE_TABLE)
    monkeypatch.setattr(pika.data, "encode_value", pika_encode_value)
    yield


def _pika(table: Any) -> bytes:
    pieces: list[bytes] = []
    size = pika.data.encode_table(pieces, table)
    data = b"".join(pieces)
    assert size == len(data)
    return data


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


def _celery_headers(**changes: Any) -> dict[str, Any]:
    headers = dict(
        build_task_message(
            task="proj.tasks.add",
            task_id="6f1c2d3e-aaaa-4bbb-8ccc-1234567890ab",
            args=(2, {"deep": [1, "two", None]}),
            kwargs={"z": "é"},
            exchange="",
            routing_key="celery",
            timelimit=(30.0, 60),
        ).headers
    )
    headers.update(changes)
    return headers


TABLES: list[Any] = [
    None,
    {},
    _celery_headers(),
    _celery_headers(parent_id="p", root_id="r", group="g", retries=3, ignore_result=True),
    _celery_headers(eta="2030-01-01T00:00:00+00:00", expires="2030-01-02T00:00:00+00:00"),
    _celery_headers(argsrepr="(" + "x" * 2000 + ")", origin="4242@hôte-☃"),
    {"x-death": [{"count": 2, "reason": "expired", "queue": "q", "routing-keys": ["a", "b"]}]},
    {"ints": [0, 1, -1, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1, 2**63 - 1, -(2**63)]},
    {"bools": [True, False], "none": None, "empty": [], "nested": {"a": {"b": {}}}},
    {"bytes": b"\x00\xffraw", "empty-bytes": b"", "str": "", "unicode": "日本語 🎉"},
    {"floats": [0.0, -1.5, 3.25e300, float("inf")], "int-key": 1},
    {"decimal": decimal.Decimal("3.14"), "decimal-int": decimal.Decimal("42")},
    {"when": dt.datetime(2024, 5, 6, 7, 8, 9)},
    {"long": pika.compat.long(5), "enum": Colour.RED, "str-subclass": Name("n")},
    collections.OrderedDict([("b", 1), ("a", collections.OrderedDict([("c", [1])]))]),
    {b"bytes-key": 1, Name("subclass-key"): "v"},
    {"k" * 255: "longest key"},
]


@pytest.mark.parametrize("table", TABLES, ids=range(len(TABLES)))
def test_same_bytes_as_pika(table: Any, pika_original: None) -> None:
    expected = _pika(table)
    assert table_bytes(table) == expected
    pieces: list[bytes] = []
    assert encode_table(pieces, table) == len(expected)
    assert b"".join(pieces) == expected


def _random_value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(9 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randint(-(2**63), 2**63 - 1) if rng.random() < 0.3 else rng.randint(-99, 99)
    if kind == 3:
        return "".join(rng.choice("aé☃\U0001f389 x") for _ in range(rng.randrange(12)))
    if kind == 4:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(6)))
    if kind == 5:
        return rng.uniform(-1e9, 1e9)
    if kind == 6:
        return decimal.Decimal(rng.randint(-999, 999)) / 100
    if kind == 7:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return _random_table(rng, depth + 1)


def _random_table(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    return {f"k{i}-{rng.randrange(10**6)}": _random_value(rng, depth) for i in range(6)}


def test_same_bytes_as_pika_for_random_tables(pika_original: None) -> None:
    rng = random.Random(1234)
    for _ in range(300):
        table = _random_table(rng)
        assert table_bytes(table) == _pika(table), table


@pytest.mark.parametrize(
    "value",
    [None, True, 7, 2**40, "s", b"b", 1.5, [1, [2]], {"a": 1}, decimal.Decimal("1.5")],
)
def test_encode_value_matches_pika(value: Any, pika_original: None) -> None:
    expected: list[bytes] = []
    size = pika_encode_value(expected, value)
    pieces: list[bytes] = []
    assert encode_value(pieces, value) == size
    assert b"".join(pieces) == b"".join(expected)


@pytest.mark.parametrize("value", [(1, 2), {1, 2}, object(), 1j])
def test_unsupported_values_are_refused_as_pika_does(value: Any, pika_original: None) -> None:
    with pytest.raises(pika.exceptions.UnsupportedAMQPFieldException):
        _pika({"v": value})
    with pytest.raises(pika.exceptions.UnsupportedAMQPFieldException):
        table_bytes({"v": [value]})


def test_a_key_over_255_bytes_is_refused() -> None:
    with pytest.raises(pika.exceptions.ShortStringTooLong):
        table_bytes({"é" * 128: 1})


def test_an_integer_beyond_64_bits_is_refused() -> None:
    with pytest.raises(struct.error):
        table_bytes({"big": 2**63})


def test_pika_uses_it_once_amqptasks_transport_is_imported() -> None:
    import amqptasks.transport._pika  # noqa: F401  (installs it)

    assert pika.data.encode_table is _fieldtable.encode_table
    assert pika.data.encode_value is _fieldtable.encode_value
    headers = _celery_headers()
    properties = pika.BasicProperties(headers=headers)
    decoded = pika.BasicProperties()
    decoded.decode(b"".join(properties.encode()))
    assert decoded.headers == headers
    assert decoded.headers["timelimit"] == [60, 30.0]  # the float came back a float


#: Every AMQP type the worker's consumer can decode (pika sends bytes as byte arrays).
DECODED_KINDS: dict[str, Any] = {
    "bytes": b"\x00\xffraw",
    "decimal": decimal.Decimal("3.14"),
    "timestamp": dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc),
    "table": {"a": {"b": [1, b"\x01", None]}},
    "array": [1, "two", [3.5, [4]]],
    "void": None,
    "long": -(2**63),
    "double": 0.1,
}


def test_decoded_headers_re_encode_the_same_on_both_transports() -> None:
    """#13: pamqp (aio-pika) refused bytes and wrote doubles as 32-bit floats."""
    import pamqp.commands

    from amqptasks.transport._fielddecode import decode_table
    from amqptasks.transport.aio import to_aio_message

    decoded, _end = decode_table(table_bytes(DECODED_KINDS), 0)
    assert decoded == DECODED_KINDS
    message = build_task_message(
        task="t",
        task_id="i",
        args=(),
        kwargs={},
        exchange="",
        routing_key="q",
        extra_headers=decoded,
    )
    properties = to_aio_message(message).properties
    assert isinstance(properties, pamqp.commands.Basic.Properties)
    encoded = properties.encode_property("headers", message.headers)
    assert encoded == table_bytes(message.headers)
    assert decode_table(encoded, 0)[0] == message.headers


def test_a_timestamp_past_year_9999_is_read_and_written_back() -> None:
    from amqptasks.transport._fielddecode import Timestamp, decode_table

    raw = b"\x01tT" + struct.pack(">Q", 2**64 - 1)
    table, _end = decode_table(struct.pack(">I", len(raw)) + raw, 0)
    assert table == {"t": 2**64 - 1}
    assert isinstance(table["t"], Timestamp)
    assert table_bytes(table)[4:] == raw


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"x-set": {1}}, "x-set"),
        ({"x-obj": object()}, "x-obj"),
        ({"x-big": 2**64}, "x-big"),
        ({"x-nan": [1.0, float("nan")]}, "x-nan"),
        ({"x-inf": {"a": float("inf")}}, "x-inf"),
        ({"x-old": dt.datetime(1960, 1, 1)}, "x-old"),
        ({"é" * 200: 1}, "é"),
    ],
)
def test_check_headers_names_what_the_wire_cannot_carry(headers: Any, named: str) -> None:
    from amqptasks.exceptions import ConfigError
    from amqptasks.transport._fieldtable import check_headers

    with pytest.raises(ConfigError, match="cannot be sent") as caught:
        check_headers(headers)
    assert named in str(caught.value)


def test_check_headers_takes_every_decoded_kind() -> None:
    from amqptasks.transport._fieldtable import check_headers

    check_headers({**DECODED_KINDS, "bytearray": bytearray(b"x"), "float": 1e300})
