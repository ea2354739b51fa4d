"""Serializers: round trips, JSON extras, and what a worker accepts."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from typing import Any

import pytest

from amqptasks.exceptions import ConfigError, DecodeError
from amqptasks.protocol import serializers

SAMPLE: Any = {
    "int": 1,
    "float": 2.5,
    "text": "héllo ✓",
    "none": None,
    "flags": [True, False],
    "nested": {"list": [1, [2, [3]]], "empty": {}},
}


@pytest.mark.parametrize("name", ["json", "msgpack", "yaml", "pickle"])
def test_round_trip(name: str) -> None:
    info = serializers.by_name(name)
    data = info.serializer.dumps(SAMPLE)
    assert isinstance(data, bytes)
    assert info.serializer.loads(data) == SAMPLE


@pytest.mark.parametrize(
    ("name", "content_type", "encoding"),
    [
        ("json", "application/json", "utf-8"),
        ("msgpack", "application/x-msgpack", "binary"),
        ("yaml", "application/x-yaml", "utf-8"),
        ("pickle", "application/x-python-serialize", "binary"),
    ],
)
def test_content_types_are_kombus(name: str, content_type: str, encoding: str) -> None:
    info = serializers.by_name(name)
    assert (info.content_type, info.content_encoding) == (content_type, encoding)
    assert serializers.by_name(content_type) is info


def test_json_is_utf8_without_ascii_escapes() -> None:
    data = serializers.by_name("json").serializer.dumps(["héllo"])
    assert data == '["héllo"]'.encode()


def test_json_encodes_datetime_uuid_decimal_as_kombu_typed_values() -> None:
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    value = {
        "when": when,
        "day": dt.date(2024, 5, 1),
        "at": dt.time(7, 5),
        "id": ident,
        "amount": decimal.Decimal("10.10"),
        "raw": b"caf\xc3\xa9",
        "tags": {"a"},
    }
    serializer = serializers.by_name("json").serializer
    data = serializer.dumps(value)
    assert json.loads(data) == {
        "when": {"__type__": "datetime", "__value__": "2024-05-01T12:30:00+00:00"},
        "day": {"__type__": "date", "__value__": "2024-05-01"},
        "at": {"__type__": "time", "__value__": "07:05:00"},
        "id": {"__type__": "uuid", "__value__": {"hex": "12345678123456781234567812345678"}},
        "amount": {"__type__": "decimal", "__value__": "10.10"},
        "raw": {"__type__": "bytes", "__value__": "café"},
        "tags": ["a"],
    }
    assert serializer.loads(data) == {**value, "tags": ["a"]}


def test_json_leaves_other_dicts_with_type_keys_alone() -> None:
    serializer = serializers.by_name("json").serializer
    assert serializer.loads(b'{"__type__": "x", "__value__": 1}') == {
        "__type__": "x",
        "__value__": 1,
    }
    assert serializer.loads(b'{"__type__": "uuid", "__value__": "a", "more": 1}')["more"] == 1


def test_json_refuses_unknown_objects() -> None:
    with pytest.raises(TypeError, match="object"):
        serializers.by_name("json").serializer.dumps({"x": object()})


def test_msgpack_keeps_bytes_and_encodes_datetimes_as_text() -> None:
    info = serializers.by_name("msgpack")
    when = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    assert info.serializer.loads(info.serializer.dumps([b"\x00\xff", when])) == [
        b"\x00\xff",
        "2024-05-01T00:00:00+00:00",
    ]


def test_yaml_does_not_construct_python_objects() -> None:
    info = serializers.by_name("yaml")
    with pytest.raises(Exception, match="python/object"):
        info.serializer.loads(b"!!python/object/apply:os.getcwd []")


def test_unknown_serializer_name() -> None:
    with pytest.raises(ConfigError, match="jsonn"):
        serializers.by_name("jsonn")


def test_pickle_must_be_accepted_by_name() -> None:
    with pytest.raises(ConfigError, match="pickle"):
        serializers.check_accepted("pickle", ("json",))


def test_check_accepted_allows_named_serializers() -> None:
    assert serializers.check_accepted("pickle", ("json", "pickle")).name == "pickle"
    # accept_content may spell content types, as Celery allows.
    assert serializers.check_accepted("json", ("application/json",)).name == "json"


def test_check_accepted_refuses_other_serializers_too() -> None:
    with pytest.raises(ConfigError, match="msgpack"):
        serializers.check_accepted("msgpack", ("json", "yaml"))


def test_decoder_for_accepted_content_type() -> None:
    assert serializers.decoder_for("application/x-msgpack", ("json", "msgpack")).name == "msgpack"


@pytest.mark.parametrize("content_type", ["text/plain", "", None, "application/jsonx"])
def test_decoder_for_unknown_content_type(content_type: str | None) -> None:
    with pytest.raises(DecodeError, match="unsupported content type"):
        serializers.decoder_for(content_type, ("json",))


def test_decoder_for_refuses_pickle_unless_accepted() -> None:
    with pytest.raises(DecodeError, match="accept_content") as info:
        serializers.decoder_for("application/x-python-serialize", ("json", "msgpack", "yaml"))
    assert info.value.content_type == "application/x-python-serialize"
    assert (
        serializers.decoder_for("application/x-python-serialize", ("json", "pickle")).name
        == "pickle"
    )
