"""Messages the worker sends back (pure): a call's state for its caller, a delayed copy.

The dead-letter message is built in :mod:`.deadletter`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from amqptasks import constants
from amqptasks.protocol.envelope import OutgoingMessage
from amqptasks.publishing import DEAD_LETTER_HEADERS
from amqptasks.results import states
from amqptasks.results.meta import encode_result

if TYPE_CHECKING:
    from amqptasks.protocol.envelope import TaskMessage
    from amqptasks.protocol.serializers import SerializerInfo
    from amqptasks.transport.consumer import Delivery
    from amqptasks.worker.outcome import Outcome


def result_message(
    parsed: TaskMessage, outcome: Outcome, serializer: SerializerInfo
) -> OutgoingMessage:
    """``outcome`` for the caller's reply queue (``parsed.reply_to``), transient.

    A value the result serializer cannot encode becomes a FAILURE saying so.
    """
    try:
        body = serializer.serializer.dumps(
            encode_result(
                parsed.id,
                outcome.status,
                outcome.value,
                traceback=outcome.traceback,
                exception=outcome.exception,
            )
        )
    except (TypeError, ValueError) as exc:
        body = serializer.serializer.dumps(
            encode_result(
                parsed.id,
                states.FAILURE,
                exception=TypeError(
                    f"result of {parsed.task} cannot be serialized with {serializer.name}: {exc}"
                ),
            )
        )
    return OutgoingMessage(
        exchange=constants.DEFAULT_EXCHANGE,
        routing_key=parsed.reply_to or "",
        body=body,
        content_type=serializer.content_type,
        content_encoding=serializer.content_encoding,
        headers={},
        message_id=parsed.id,
        correlation_id=parsed.correlation_id or parsed.id,
        delivery_mode=1,
    )


def delayed_copy(
    message: Delivery,
    queue: str,
    countdown: float,
    retries: int,
    extra: dict[str, Any] | None = None,
) -> OutgoingMessage:
    """The delivered ``message`` again, for ``queue``, with its ``retries`` and ETA."""
    # Broker dead-letter headers would make the broker see a cycle and drop the
    # message; our own headers describe the previous attempt only.
    headers = {
        k: v
        for k, v in (message.headers or {}).items()
        if k not in DEAD_LETTER_HEADERS and not k.startswith(constants.HEADER_PREFIX)
    }
    headers.update(extra or {})
    headers["retries"] = retries
    if countdown > 0:
        eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=countdown)
        headers["eta"] = eta.isoformat()
    return OutgoingMessage(
        exchange=constants.DEFAULT_EXCHANGE,
        routing_key=queue,
        body=message.body,
        content_type=message.content_type or "application/json",
        content_encoding=message.content_encoding or "utf-8",
        headers=headers,
        message_id=message.message_id or message.correlation_id or "",
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        priority=message.priority,
    )
