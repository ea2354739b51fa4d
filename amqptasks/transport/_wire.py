"""The frames of one ``basic.publish``, encoded without pika's frame objects.

pika builds a ``Basic.Publish``, a ``BasicProperties``, three frame objects and
several lists per message, then writes each frame separately. Here the caller's
thread encodes the method arguments and the content header once
(:func:`encode_publish`), and the I/O thread wraps them in frames for its
channel (:func:`append_frames`) and writes a whole batch of messages at once.
The bytes are those of pika's ``Channel.basic_publish`` (the tests compare
them), with field tables from :mod:`amqptasks.transport._fieldtable`.

AMQP 0.9.1 framing: https://www.rabbitmq.com/resources/specs/amqp0-9-1.pdf (2.3.5, 4.2.3)
"""

from __future__ import annotations

import functools
import struct
from typing import TYPE_CHECKING, NamedTuple

import pika.exceptions

from amqptasks.transport._fieldtable import table_bytes

if TYPE_CHECKING:
    from collections.abc import Callable

    from amqptasks.protocol.envelope import OutgoingMessage

_FRAME_METHOD = 1
_FRAME_HEADER = 2
_FRAME_BODY = 3
_FRAME_END = b"\xce"
_frame_start = struct.Struct(">BHI").pack
#: class 60 (basic), weight 0, body size, property flags (all in the first word).
_content_header_start = struct.Struct(">HHQH").pack
_octet = struct.Struct("B").pack

# basic.publish: class 60, method 40, then the deprecated ticket (0).
_PUBLISH = struct.pack(">IH", 0x003C0028, 0)
#: The ``mandatory`` bit (the only one set: ``immediate`` is refused by RabbitMQ).
_BITS = {True: b"\x01", False: b"\x00"}

_CONTENT_TYPE = 1 << 15
_CONTENT_ENCODING = 1 << 14
_HEADERS = 1 << 13
_DELIVERY_MODE = 1 << 12
_PRIORITY = 1 << 11
_CORRELATION_ID = 1 << 10
_REPLY_TO = 1 << 9
_EXPIRATION = 1 << 8
_MESSAGE_ID = 1 << 7


class EncodedPublish(NamedTuple):
    """A message's ``basic.publish`` arguments and content header, frame payloads."""

    method: bytes
    header: bytes
    body: bytes


def short_string(value: str | bytes) -> bytes:
    """An AMQP short string (length octet, then UTF-8).

    Raises:
        pika.exceptions.ShortStringTooLong: more than 255 bytes.
    """
    data = value.encode() if isinstance(value, str) else value
    if len(data) > 255:
        raise pika.exceptions.ShortStringTooLong(data)
    return _octet(len(data)) + data


@functools.lru_cache(maxsize=256)
def _publish_method(exchange: str, routing_key: str, mandatory: bool) -> bytes:
    return _PUBLISH + short_string(exchange) + short_string(routing_key) + _BITS[mandatory]


#: For the properties that repeat: content type and encoding, the reply queue.
_repeated = functools.lru_cache(maxsize=256)(short_string)


def encode_publish(message: OutgoingMessage, *, mandatory: bool = True) -> EncodedPublish:
    """Encode ``message`` for a ``basic.publish`` (``mandatory`` unless told otherwise).

    Raises:
        pika.exceptions.UnsupportedAMQPFieldException: a header AMQP cannot carry.
        pika.exceptions.ShortStringTooLong: a name or property over 255 bytes.
        struct.error: an integer header beyond 64 bits, or an out-of-range octet.
    """
    flags = 0
    props: list[bytes] = []
    append = props.append
    if message.content_type is not None:
        flags |= _CONTENT_TYPE
        append(_repeated(message.content_type))
    if message.content_encoding is not None:
        flags |= _CONTENT_ENCODING
        append(_repeated(message.content_encoding))
    if message.headers is not None:
        flags |= _HEADERS
        append(table_bytes(message.headers))
    if message.delivery_mode is not None:
        flags |= _DELIVERY_MODE
        append(_octet(message.delivery_mode))
    if message.priority is not None:
        flags |= _PRIORITY
        append(_octet(message.priority))
    correlation_id = message.correlation_id
    encoded_id = b""
    if correlation_id is not None:
        flags |= _CORRELATION_ID
        encoded_id = short_string(correlation_id)
        append(encoded_id)
    if message.reply_to is not None:
        flags |= _REPLY_TO
        append(_repeated(message.reply_to))
    if message.expiration is not None:
        flags |= _EXPIRATION
        append(short_string(message.expiration))
    if message.message_id is not None:
        flags |= _MESSAGE_ID
        # a task message's id is its correlation id too: encoded once
        same = encoded_id and message.message_id == correlation_id
        append(encoded_id if same else short_string(message.message_id))
    body = message.body
    header = _content_header_start(60, 0, len(body), flags) + b"".join(props)
    method = _publish_method(message.exchange, message.routing_key, mandatory)
    return EncodedPublish(method, header, body)


def append_frames(
    append: Callable[[bytes], None], channel: int, encoded: EncodedPublish, body_max: int
) -> int:
    """Append the frames of ``encoded`` on ``channel``; return how many there are.

    ``body_max`` is the largest body frame payload (negotiated ``frame_max`` - 8).
    """
    method, header, body = encoded
    append(_frame_start(_FRAME_METHOD, channel, len(method)))
    append(method)
    append(_FRAME_END)
    append(_frame_start(_FRAME_HEADER, channel, len(header)))
    append(header)
    append(_FRAME_END)
    size = len(body)
    if size <= body_max:
        if not size:
            return 2
        append(_frame_start(_FRAME_BODY, channel, size))
        append(body)
        append(_FRAME_END)
        return 3
    count = 2
    for start in range(0, size, body_max):
        chunk = body[start : start + body_max]
        append(_frame_start(_FRAME_BODY, channel, len(chunk)))
        append(chunk)
        append(_FRAME_END)
        count += 1
    return count
