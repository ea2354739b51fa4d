"""Build the message that carries a poison delivery to its queue's DLQ (pure)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from amqptasks import constants
from amqptasks.protocol.envelope import OutgoingMessage
from amqptasks.publishing import DEAD_LETTER_HEADERS

if TYPE_CHECKING:
    from collections.abc import Mapping

#: How much of an error text goes into a header.
ERROR_TEXT_LIMIT = 2000


def dead_letter_message(
    *,
    queue: str,
    dead_letter_queue: str,
    body: bytes,
    headers: Mapping[str, Any] | None,
    content_type: str | None,
    content_encoding: str | None,
    message_id: str | None,
    correlation_id: str | None,
    reply_to: str | None,
    exchange: str,
    routing_key: str,
    reason: str,
    error: str,
    worker: str,
    exc_type: str | None = None,
) -> OutgoingMessage:
    """The original message, bound for ``dead_letter_queue``, with why it ended there.

    Headers RabbitMQ adds on dead-lettering are dropped, so that a message
    replayed from the DLQ is not taken for a dead-letter cycle later.
    """
    extra: dict[str, Any] = {
        constants.HEADER_REASON: reason,
        constants.HEADER_ERROR: error[:ERROR_TEXT_LIMIT],
        constants.HEADER_WORKER: worker,
        constants.HEADER_ORIGINAL_EXCHANGE: exchange,
        constants.HEADER_ORIGINAL_ROUTING_KEY: routing_key,
        constants.HEADER_DEAD_LETTERED_AT: dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    if exc_type:
        extra[constants.HEADER_EXC_TYPE] = exc_type
    return OutgoingMessage(
        exchange=constants.DEFAULT_EXCHANGE,
        routing_key=dead_letter_queue,
        body=body,
        content_type=content_type or "application/octet-stream",
        content_encoding=content_encoding or "binary",
        headers={
            **{k: v for k, v in (headers or {}).items() if k not in DEAD_LETTER_HEADERS},
            **extra,
        },
        message_id=message_id or correlation_id or "",
        correlation_id=correlation_id,
        reply_to=reply_to,
    )
