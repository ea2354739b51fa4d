"""Serializers, chosen by name or by the message's ``content_type``.

``json`` (default), ``msgpack`` and ``yaml`` are always available. ``pickle``
can run arbitrary code when a message is decoded, so a worker accepts it only
when the application names it in ``accept_content`` and a producer uses it
only when a task or call names it as its serializer.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import pickle
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack
import yaml

from amqptasks.exceptions import ConfigError, DecodeError


class Serializer(Protocol):
    """Turns Python objects into bytes and back."""

    def dumps(self, obj: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


def _text_default(obj: Any) -> Any:
    """msgpack/yaml fallback: datetimes, UUIDs and Decimals as text, sets as lists."""
    if isinstance(obj, dt.datetime | dt.date | dt.time):
        return obj.isoformat()
    if isinstance(obj, uuid.UUID | decimal.Decimal):
        return str(obj)
    if isinstance(obj, set | frozenset):
        return list(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not serializable")


#: kombu (5.3+) writes these types as {"__type__": name, "__value__": text} in JSON.
_KOMBU_TYPES: dict[str, Any] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "decimal": decimal.Decimal,
    # kombu writes {"hex": "..."}; plain strings are accepted too.
    "uuid": lambda value: uuid.UUID(**value) if isinstance(value, dict) else uuid.UUID(value),
    "bytes": lambda text: text.encode("utf-8"),
    "base64": base64.b64decode,
}


def _json_default(obj: Any) -> Any:
    # datetime before date: a datetime is a date too.
    if isinstance(obj, dt.datetime):
        return {"__type__": "datetime", "__value__": obj.isoformat()}
    if isinstance(obj, dt.date):
        return {"__type__": "date", "__value__": obj.isoformat()}
    if isinstance(obj, dt.time):
        return {"__type__": "time", "__value__": obj.isoformat()}
    if isinstance(obj, decimal.Decimal):
        return {"__type__": "decimal", "__value__": str(obj)}
    if isinstance(obj, uuid.UUID):
        return {"__type__": "uuid", "__value__": {"hex": obj.hex}}
    if isinstance(obj, bytes):
        try:
            return {"__type__": "bytes", "__value__": obj.decode("utf-8")}
        except UnicodeDecodeError:
            return {"__type__": "base64", "__value__": base64.b64encode(obj).decode()}
    if isinstance(obj, set | frozenset):
        return list(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _json_object_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 2 and "__type__" in obj and "__value__" in obj:
        convert = _KOMBU_TYPES.get(obj["__type__"])
        if convert is not None:
            return convert(obj["__value__"])
    return obj


class JSONSerializer:
    """UTF-8 JSON as kombu writes it: datetimes, dates, times, Decimals, UUIDs and
    UTF-8 bytes travel as ``{"__type__": ..., "__value__": ...}`` and come back as
    the same types (on amqptasks and Celery workers alike); sets become lists."""

    _encoder = json.JSONEncoder(default=_json_default, ensure_ascii=False, separators=(",", ":"))

    def dumps(self, obj: Any) -> bytes:
        return self._encoder.encode(obj).encode()

    def loads(self, data: bytes) -> Any:
        if b"__type__" not in data:  # the common case needs no hook
            return json.loads(data)
        return json.loads(data, object_hook=_json_object_hook)


class MsgpackSerializer:
    """msgpack with binary strings kept as ``bytes``."""

    def dumps(self, obj: Any) -> bytes:
        return msgpack.packb(obj, use_bin_type=True, default=_text_default)  # type: ignore[no-any-return]

    def loads(self, data: bytes) -> Any:
        return msgpack.unpackb(data, raw=False)


class YAMLSerializer:
    """YAML through ``yaml.safe_dump``/``safe_load`` (no object construction)."""

    def dumps(self, obj: Any) -> bytes:
        return yaml.safe_dump(obj).encode()

    def loads(self, data: bytes) -> Any:
        return yaml.safe_load(data)


class PickleSerializer:
    """Pickle. Decoding runs code chosen by the sender: enable it only by name."""

    def dumps(self, obj: Any) -> bytes:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


@dataclass(frozen=True)
class SerializerInfo:
    """A registered serializer and the AMQP properties that name it."""

    name: str
    content_type: str
    content_encoding: str
    serializer: Serializer


_REGISTRY: dict[str, SerializerInfo] = {}
_BY_CONTENT_TYPE: dict[str, SerializerInfo] = {}


def register(info: SerializerInfo) -> None:
    """Register a serializer under its name and content type."""
    _REGISTRY[info.name] = info
    _BY_CONTENT_TYPE[info.content_type] = info


register(SerializerInfo("json", "application/json", "utf-8", JSONSerializer()))
register(SerializerInfo("msgpack", "application/x-msgpack", "binary", MsgpackSerializer()))
register(SerializerInfo("yaml", "application/x-yaml", "utf-8", YAMLSerializer()))
register(SerializerInfo("pickle", "application/x-python-serialize", "binary", PickleSerializer()))


def by_name(name: str) -> SerializerInfo:
    """Look a serializer up by name (``json``) or content type (``application/json``).

    Raises:
        ConfigError: for a name nobody registered.
    """
    info = _REGISTRY.get(name) or _BY_CONTENT_TYPE.get(name)
    if info is None:
        raise ConfigError(f"unknown serializer {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return info


def check_accepted(name: str, accept_content: tuple[str, ...]) -> SerializerInfo:
    """Return the serializer ``name`` if ``accept_content`` allows it.

    Raises:
        ConfigError: when the serializer is unknown or not accepted (pickle must be named).
    """
    info = by_name(name)
    accepted = {by_name(item).name for item in accept_content}
    if info.name not in accepted:
        raise ConfigError(
            f"serializer {info.name!r} is not in accept_content {list(accept_content)}; "
            f"add it there to use it"
            + (
                " (pickle runs code from the message: enable it on purpose)"
                if info.name == "pickle"
                else ""
            )
        )
    return info


def decoder_for(content_type: str | None, accept_content: tuple[str, ...]) -> SerializerInfo:
    """The serializer that decodes ``content_type``, if accepted.

    Raises:
        DecodeError: when the content type is unknown or not accepted.
    """
    info = _BY_CONTENT_TYPE.get(content_type or "")
    if info is None:
        raise DecodeError(
            f"unsupported content type {content_type!r}", content_type=content_type or ""
        )
    if info.name not in {by_name(item).name for item in accept_content}:
        raise DecodeError(
            f"content type {content_type!r} ({info.name}) is not in accept_content",
            content_type=content_type or "",
        )
    return info
