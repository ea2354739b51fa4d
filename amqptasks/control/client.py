"""The client side: broadcast a command to workers and gather their answers; revoke calls.

Speaks the same pidbox protocol as ``celery inspect`` (:mod:`amqptasks.control.pidbox`),
so Celery workers answer it too. Sync (pika), for the command line and scripts.

Example:
    >>> with Control(app.settings.broker) as control:
    ...     control.broadcast("ping")
    [{'worker@host': {'ok': 'pong'}}]
    ...     control.revoke(["5f3c..."])
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import pika

from amqptasks.control.pidbox import CONTROL_EXCHANGE, REPLY_EXCHANGE
from amqptasks.control.revokes import REVOKES_STREAM, revoke_message, revokes_declarations
from amqptasks.transport import _pika

if TYPE_CHECKING:
    from types import TracebackType

    from amqptasks.config import BrokerURL

__all__ = ["Control"]


class Control:
    """A connection for remote control (see the module docstring).

    Args:
        url: The broker.
    """

    def __init__(self, url: BrokerURL) -> None:
        parameters = _pika.every_node_parameters(url, "amqptasks control")
        self._connection = pika.BlockingConnection(parameters)
        self._channel = self._connection.channel()
        self.oid = str(uuid.uuid4())

    def __enter__(self) -> Control:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        if self._connection.is_open:
            self._connection.close()

    def broadcast(
        self,
        method: str,
        arguments: dict[str, Any] | None = None,
        *,
        destination: list[str] | None = None,
        timeout: float = 1.0,
        reply: bool = True,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Send ``method`` to every worker (or those in ``destination``); return the
        answers (``{hostname: answer}`` each) that arrive within ``timeout`` seconds."""
        channel = self._channel
        channel.exchange_declare(CONTROL_EXCHANGE.name, CONTROL_EXCHANGE.type, durable=False)
        message: dict[str, Any] = {
            "method": method,
            "arguments": arguments or {},
            "destination": destination,
            "pattern": None,
            "matcher": None,
        }
        queue = ""
        ticket = str(uuid.uuid4())
        if reply:
            channel.exchange_declare(REPLY_EXCHANGE.name, REPLY_EXCHANGE.type, durable=False)
            # Exclusive: allowed on RabbitMQ 4.3 (unlike transient non-exclusive queues).
            queue = f"{self.oid}.{REPLY_EXCHANGE.name}"
            channel.queue_declare(queue, exclusive=True, arguments={"x-expires": 10_000})
            channel.queue_bind(queue, REPLY_EXCHANGE.name, self.oid)
            message["ticket"] = ticket
            message["reply_to"] = {"exchange": REPLY_EXCHANGE.name, "routing_key": self.oid}
        channel.basic_publish(
            CONTROL_EXCHANGE.name,
            "",
            json.dumps(message).encode(),
            pika.BasicProperties(
                content_type="application/json",
                content_encoding="utf-8",
                headers={"clock": 0, "expires": time.time() + timeout},
                delivery_mode=1,
            ),
        )
        if not reply:
            return []
        wanted = limit or (len(destination) if destination else None)
        answers: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (wanted is None or len(answers) < wanted):
            method_frame, properties, body = channel.basic_get(queue, auto_ack=True)
            if method_frame is None:
                self._connection.sleep(0.02)
                continue
            if (properties.headers or {}).get("ticket") != ticket:
                continue
            answer = json.loads(body)
            if isinstance(answer, dict):
                answers.append(answer)
        return answers

    def revoke(
        self, task_ids: list[str], *, expires: float | None = None, terminate: bool = False
    ) -> None:
        """Revoke ``task_ids`` on the broker (confirmed): workers running now and workers that
        start later skip them, until ``expires`` (UNIX time; default: 7 days)."""
        channel = self._channel
        for queue in revokes_declarations().queues:
            channel.queue_declare(queue.name, durable=True, arguments=dict(queue.arguments))
        channel.confirm_delivery()
        outgoing = revoke_message(task_ids, expires=expires, terminate=terminate)
        channel.basic_publish(
            "",
            REVOKES_STREAM,
            outgoing.body,
            pika.BasicProperties(
                content_type=outgoing.content_type,
                content_encoding=outgoing.content_encoding,
                delivery_mode=2,
                message_id=outgoing.message_id,
            ),
            mandatory=True,
        )
