"""Messages the worker sends back (pure): a call's state for its caller, a delayed copy.

The dead-letter message is built in :mod:`.deadletter`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a call's states go: its caller's reply queue, under its task id."""

    task_id: str
    task_name: str
    reply_to: str
    correlation_id: str

    @classmethod
    def of(cls, message: TaskMessage) -> ReplyTarget | None:
        """The target of a decoded message; None when it wants no result."""
        if not message.reply_to or message.ignore_result:
            return None
        return cls(message.id, message.task, message.reply_to, message.correlation_id or message.id)

    @classmethod
    def of_raw(cls, delivery: Delivery) -> ReplyTarget | None:
        """The target of a message that could not be decoded, from what can be read.

        The task id is the ``id`` header when it is a string, else the
        correlation id (Celery sets both to the task id).
        """
        headers = delivery.headers if isinstance(delivery.headers, dict) else {}
        task_id = headers.get("id")
        if not isinstance(task_id, str) or not task_id:
            task_id = delivery.correlation_id
        reply_to = delivery.reply_to
        if not task_id or not reply_to:
            return None
        task_name = headers.get("task")
        return cls(
            task_id,
            task_name if isinstance(task_name, str) else "",
            reply_to,
            delivery.correlation_id or task_id,
        )


def result_message(
    target: ReplyTarget, outcome: Outcome, serializer: SerializerInfo
) -> OutgoingMessage:
    """``outcome`` for the caller's reply queue (``target.reply_to``), transient.

    A value the result serializer cannot encode becomes a FAILURE saying so.
    """
    try:
        body = serializer.serializer.dumps(
            encode_result(
                target.task_id,
                outcome.status,
                outcome.value,
                traceback=outcome.traceback,
                exception=outcome.exception,
            )
        )
    except (TypeError, ValueError) as exc:
        body = serializer.serializer.dumps(
            encode_result(
                target.task_id,
                states.FAILURE,
                exception=TypeError(
                    f"result of {target.task_name} cannot be serialized "
                    f"with {serializer.name}: {exc}"
                ),
            )
        )
    return OutgoingMessage(
        exchange=constants.DEFAULT_EXCHANGE,
        routing_key=target.reply_to,
        body=body,
        content_type=serializer.content_type,
        content_encoding=serializer.content_encoding,
        headers={},
        message_id=target.task_id,
        correlation_id=target.correlation_id,
        delivery_mode=1,
    )


def delayed_copy(
    message: Delivery,
    queue: str,
    countdown: float,
    retries: int | None,
    extra: dict[str, Any] | None = None,
) -> OutgoingMessage:
    """The delivered ``message`` again, for ``queue``, with its ETA and ``retries``
    (None: the ``retries`` header as it was)."""
    # Broker dead-letter headers would make the broker see a cycle and drop the
    # message; our own headers describe the previous attempt only.
    headers = {
        k: v
        for k, v in (message.headers or {}).items()
        if k not in DEAD_LETTER_HEADERS and not k.startswith(constants.HEADER_PREFIX)
    }
    headers.update(extra or {})
    if retries is not None:
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
