"""The bytes a signature covers: a canonical encoding of a task message.

A signature must still verify after the message went through an AMQP field
table and back, through pika or aio-pika, so the encoding depends only on what
survives that trip:

- text and bytes are the same thing (UTF-8 text decodes back to ``str`` or stays
  ``bytes`` depending on the client); bytes that are not UTF-8 are tagged apart;
- integers are integers whatever their wire width; ``bool`` is not an integer;
- floats are their ``repr`` (AMQP doubles keep every bit);
- a list and a tuple are the same; table keys are sorted;
- a timestamp is its whole seconds since 1970 (all AMQP keeps).

What is covered: the body (its SHA-256), the properties that say how to read it
and where its result goes (``content_type``, ``content_encoding``,
``correlation_id``, ``reply_to``), and every header except those whose name
starts with ``x-``: the broker's (``x-death``, ``x-delivery-count``, ...) and
amqptasks' own bookkeeping (``x-amqptasks-*``: the signature itself, delivery
counts, dead-letter reasons), which change on the way without changing what runs.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
from collections.abc import Mapping
from typing import Any

__all__ = ["SIGNED_PROPERTIES", "encode_value", "signed_headers", "signing_input"]

#: Message properties a signature covers.
SIGNED_PROPERTIES = ("content_type", "content_encoding", "correlation_id", "reply_to")
#: The first bytes of every signed blob (a new format gets a new tag).
TAG = b"amqptasks-signature-v1\n"


def _text(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogatepass")
    return b"s%d:" % len(raw) + raw


def encode_value(value: Any, out: list[bytes]) -> None:
    """Append the canonical form of one header value to ``out``.

    Raises:
        TypeError: a value no AMQP field table carries.
    """
    kind = type(value)
    if value is None:
        out.append(b"n")
    elif kind is bool:
        out.append(b"t" if value else b"f")
    elif kind is str:
        out.append(_text(value))
    elif isinstance(value, int):  # int subclasses (an AMQP timestamp past 9999, say)
        out.append(b"i%d;" % value)
    elif kind is float:
        out.append(b"d" + repr(value).encode() + b";")
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            out.append(_text(raw.decode("utf-8")))
        except UnicodeDecodeError:
            out.append(b"x%d:" % len(raw) + raw)
    elif isinstance(value, list | tuple):
        out.append(b"l%d:" % len(value))
        for item in value:
            encode_value(item, out)
    elif isinstance(value, Mapping):
        encode_table(value, out)
    elif isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        out.append(b"T%d;" % int(moment.timestamp()))
    elif isinstance(value, decimal.Decimal):
        out.append(b"D" + str(value.normalize()).encode() + b";")
    elif isinstance(value, float):
        out.append(b"d" + repr(float(value)).encode() + b";")
    elif isinstance(value, str):
        out.append(_text(str(value)))
    else:
        raise TypeError(f"a header value of type {type(value).__name__} cannot be signed")


def encode_table(table: Mapping[Any, Any], out: list[bytes]) -> None:
    """Append the canonical form of a field table (keys sorted) to ``out``."""
    items = sorted(
        ((key.decode() if isinstance(key, bytes) else str(key)), value)
        for key, value in table.items()
    )
    out.append(b"m%d:" % len(items))
    for key, value in items:
        out.append(_text(key))
        encode_value(value, out)


def signed_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The headers a signature covers: all but the ``x-`` ones."""
    if not headers:
        return {}
    return {
        key: value
        for key, value in headers.items()
        if not (key.decode() if isinstance(key, bytes) else str(key)).startswith("x-")
    }


def signing_input(
    key_id: str,
    signed_at: int,
    body: bytes,
    headers: Mapping[str, Any] | None,
    properties: Mapping[str, str | None],
) -> bytes:
    """The bytes signed for a message (see the module docstring).

    ``signed_at`` is milliseconds since 1970; ``properties`` holds the
    :data:`SIGNED_PROPERTIES` (None and ``""`` are the same).
    """
    out = [TAG, _text(key_id), b"i%d;" % signed_at]
    for name in SIGNED_PROPERTIES:
        out.append(_text(properties.get(name) or ""))
    encode_table(signed_headers(headers), out)
    out.append(hashlib.sha256(body).digest())
    return b"".join(out)
