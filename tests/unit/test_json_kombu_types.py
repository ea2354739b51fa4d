"""JSON bodies with kombu's typed values ({"__type__": ..., "__value__": ...}).

Celery (kombu 5.3+) writes datetimes, dates, times, Decimals, UUIDs and bytes
this way; an amqptasks worker must read them back as those types, and a Celery
worker must read what amqptasks writes. The bodies below are written by hand
from kombu's format, then checked against kombu itself (a test dependency).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from typing import Any

import pytest
from kombu.utils import json as kombu_json

from amqptasks.protocol import serializers

UTC = dt.timezone.utc
IDENT = uuid.UUID("12345678-1234-5678-1234-567812345678")


def _loads(data: bytes) -> Any:
    return serializers.by_name("json").serializer.loads(data)


def _dumps(value: Any) -> bytes:
    return serializers.by_name("json").serializer.dumps(value)


def _typed(kind: str, value: Any) -> dict[str, Any]:
    return {"__type__": kind, "__value__": value}


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (
            _typed("datetime", "2024-01-02T03:04:05+00:00"),
            dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        ),
        (
            _typed("datetime", "2024-01-02T03:04:05.123456"),
            dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
        ),
        (
            _typed("datetime", "2024-01-02T05:04:05+02:00"),
            dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        ),
        (_typed("date", "2024-01-02"), dt.date(2024, 1, 2)),
        (_typed("time", "03:04:05.000006"), dt.time(3, 4, 5, 6)),
        (_typed("decimal", "10.10"), decimal.Decimal("10.10")),
        (_typed("decimal", "-1E+3"), decimal.Decimal("-1E+3")),
        (_typed("uuid", {"hex": IDENT.hex}), IDENT),  # kombu writes {"hex": ...}
        (_typed("bytes", "café"), "café".encode()),
        (_typed("base64", "AP8="), b"\x00\xff"),  # kombu's non-UTF-8 bytes
    ],
    ids=[
        "datetime-utc",
        "datetime-naive",
        "datetime-offset",
        "date",
        "time",
        "decimal",
        "decimal-exponent",
        "uuid",
        "bytes",
        "base64",
    ],
)
def test_kombu_typed_values_decode_to_python_types(encoded: dict[str, Any], expected: Any) -> None:
    body = json.dumps([[encoded], {"x": encoded}, {"callbacks": None}]).encode()
    args, kwargs, _embed = _loads(body)
    assert args == [expected]
    assert kwargs == {"x": expected}
    assert type(args[0]) is type(expected)


def test_nested_typed_values() -> None:
    body = json.dumps(
        {"outer": [{"when": _typed("date", "2024-02-29")}, _typed("decimal", "1.5")]}
    ).encode()
    assert _loads(body) == {"outer": [{"when": dt.date(2024, 2, 29)}, decimal.Decimal("1.5")]}


def test_a_whole_celery_message_body_from_kombu() -> None:
    # (UUIDs and non-UTF-8 bytes have their own tests above.)
    value = [
        [dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), decimal.Decimal("2.50")],
        {"day": dt.date(2024, 1, 2), "at": dt.time(7, 5), "raw": b"abc"},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    ]
    body = kombu_json.dumps(value).encode()
    assert _loads(body) == value


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        dt.datetime(2024, 1, 2, 3, 4, 5),
        dt.date(2024, 1, 2),
        dt.time(3, 4, 5),
        decimal.Decimal("10.10"),
        IDENT,
        b"caf\xc3\xa9",
    ],
    ids=lambda v: type(v).__name__,
)
def test_what_we_write_kombu_reads_back(value: Any) -> None:
    # A Celery worker decodes our bodies with kombu.
    assert kombu_json.loads(_dumps([value])) == [value]
    assert _loads(_dumps([value])) == [value]


def test_what_we_write_for_a_uuid_is_kombus_format() -> None:
    assert json.loads(_dumps(IDENT)) == json.loads(kombu_json.dumps(IDENT))


def test_ordinary_json_is_untouched() -> None:
    body = b'{"__type__": "datetime", "other": 1, "list": [1, "2", null]}'
    assert _loads(body) == {"__type__": "datetime", "other": 1, "list": [1, "2", None]}
    assert _loads(b'{"a": "__type__"}') == {"a": "__type__"}
