"""The frames amqptasks writes for a publish are those of pika's ``basic_publish``."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import pika
import pika.data
import pika.frame
import pika.spec
import pytest

from amqptasks.exceptions import ConfigError
from amqptasks.protocol.envelope import OutgoingMessage, build_task_message
from amqptasks.transport._fieldtable import PIKA_ENCODE_TABLE, pika_encode_value
from amqptasks.transport._wire import append_frames, encode_publish
from amqptasks.transport.sync import _encode

if TYPE_CHECKING:
    from collections.abc import Iterator

FRAME_MAX = 131072


@pytest.fixture
def pika_original(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(pika.data, "encode_table", PIKA_ENCODE_TABLE)
    monkeypatch.setattr(pika.data, "encode_value", pika_encode_value)
    yield


def _pika_frames(
    channel: int, message: OutgoingMessage, frame_max: int, *, mandatory: bool = True
) -> list[bytes]:
    """What pika's Channel.basic_publish -> Connection._send_message marshals."""
    properties = pika.BasicProperties(
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        headers=message.headers,
        delivery_mode=message.delivery_mode,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message.message_id,
        expiration=message.expiration,
    )
    method = pika.spec.Basic.Publish(
        exchange=message.exchange, routing_key=message.routing_key, mandatory=mandatory
    )
    body = message.body
    frames = [
        pika.frame.Method(channel, method).marshal(),
        pika.frame.Header(channel, len(body), properties).marshal(),
    ]
    body_max = frame_max - 8
    for chunk in range(math.ceil(len(body) / body_max)):
        frames.append(
            pika.frame.Body(channel, body[chunk * body_max : (chunk + 1) * body_max]).marshal()
        )
    return frames


def _message(**changes: Any) -> OutgoingMessage:
    message = build_task_message(
        task="proj.tasks.add",
        task_id="6f1c2d3e-aaaa-4bbb-8ccc-1234567890ab",
        args=(2, "drei"),
        kwargs={"z": [1, None]},
        exchange="",
        routing_key="celery",
        reply_to="amqptasks.reply.app.1234",
        priority=5,
        timelimit=(1.5, 3),
    )
    return dataclasses.replace(message, **changes)


MESSAGES = [
    _message(),
    _message(priority=None, reply_to=None, correlation_id=None),
    _message(expiration="60000", exchange="amq.direct", routing_key="ключ"),
    _message(body=b""),
    _message(body=b"x" * (FRAME_MAX - 8)),
    _message(body=bytes(range(256)) * 1200),  # 307,200 bytes: three body frames
    _message(headers={}, content_encoding="binary", content_type="application/x-msgpack"),
    _message(delivery_mode=1, message_id="m" * 255),
]


@pytest.mark.parametrize("message", MESSAGES, ids=range(len(MESSAGES)))
@pytest.mark.parametrize("channel", [1, 2, 65535])
def test_same_frames_as_pika(message: OutgoingMessage, channel: int, pika_original: None) -> None:
    expected = _pika_frames(channel, message, FRAME_MAX)
    out: list[bytes] = []
    count = append_frames(out.append, channel, encode_publish(message), FRAME_MAX - 8)
    assert count == len(expected)
    assert b"".join(out) == b"".join(expected)


def test_a_publish_that_is_not_mandatory_as_pika_writes_it(pika_original: None) -> None:
    message = _message(exchange="amqptasks.events", routing_key="task.succeeded")
    expected = _pika_frames(1, message, FRAME_MAX, mandatory=False)
    out: list[bytes] = []
    append_frames(out.append, 1, encode_publish(message, mandatory=False), FRAME_MAX - 8)
    assert b"".join(out) == b"".join(expected)
    assert encode_publish(message).method != encode_publish(message, mandatory=False).method


def test_a_small_frame_max_splits_the_body_as_pika_does(pika_original: None) -> None:
    message = _message(body=b"0123456789" * 10)
    for frame_max in (9, 50, 58, 108, 4096 + 8):
        expected = _pika_frames(1, message, frame_max)
        out: list[bytes] = []
        count = append_frames(out.append, 1, encode_publish(message), frame_max - 8)
        assert (count, b"".join(out)) == (len(expected), b"".join(expected))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"headers": {"x-bad": (1, 2)}}, "type AMQP cannot carry: \\(1, 2\\) \\(tuple\\)"),
        ({"headers": {"x-bad": [object()]}}, "type AMQP cannot carry"),
        ({"routing_key": "r" * 256}, "cannot be encoded"),
        ({"headers": {"big": 2**64}}, "cannot be encoded"),
        ({"priority": 256}, "cannot be encoded"),
    ],
)
def test_what_amqp_cannot_carry_is_a_config_error(changes: dict[str, Any], match: str) -> None:
    message = _message(**changes)
    with pytest.raises(ConfigError, match=match) as raised:
        _encode(message)
    assert message.message_id in str(raised.value)
