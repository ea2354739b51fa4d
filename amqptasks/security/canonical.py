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


#: Header names seen so far, encoded (a few dozen in practice; bounded).
_names: dict[str, bytes] = {}
_NAMES_KEPT = 4096


def _name(key: Any) -> tuple[str, bytes]:
    text = key if type(key) is str else (key.decode() if isinstance(key, bytes) else str(key))
    encoded = _names.get(text)
    if encoded is None:
        encoded = _text(text)
        if len(_names) < _NAMES_KEPT:
            _names[text] = encoded
    return text, encoded


def encode_value(value: Any, out: list[bytes]) -> None:
    """Append the canonical form of one header value to ``out``.

    Raises:
        TypeError: a value no AMQP field table carries.
    """
    kind = type(value)
    if kind is str:
        raw = value.encode("utf-8", "surrogatepass")
        out.append(b"s%d:" % len(raw) + raw)
    elif value is None:
        out.append(b"n")
    elif kind is bool:
        out.append(b"t" if value else b"f")
    elif isinstance(value, int):  # int subclasses (an AMQP timestamp past 9999, say)
        out.append(b"i%d;" % value)
    elif isinstance(value, float):
        out.append(b"d" + repr(float(value)).encode() + b";")
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
    elif isinstance(value, str):
        out.append(_text(str(value)))
    else:
        raise TypeError(f"a header value of type {type(value).__name__} cannot be signed")


def encode_table(table: Mapping[Any, Any], out: list[bytes], *, skip_x: bool = False) -> None:
    """Append the canonical form of a field table (keys sorted) to ``out``.

    ``skip_x``: leave out the entries whose name starts with ``x-``.
    """
    items = sorted((_name(key), value) for key, value in table.items())
    if skip_x:
        items = [item for item in items if not item[0][0].startswith("x-")]
    out.append(b"m%d:" % len(items))
    for (_text_name, encoded), value in items:
        out.append(encoded)
        encode_value(value, out)


def signed_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The headers a signature covers: all but the ``x-`` ones."""
    if not headers:
        return {}
    return {key: value for key, value in headers.items() if not _name(key)[0].startswith("x-")}


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
    encode_table(headers or {}, out, skip_x=True)
    out.append(hashlib.sha256(body).digest())
    return b"".join(out)
