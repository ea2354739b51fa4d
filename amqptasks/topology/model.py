"""Queue declarations as plain values, with their ``x-*`` arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amqptasks.topology import names

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True)
class QueueDeclaration:
    """Exactly what is sent in ``queue.declare``."""

    name: str
    durable: bool = True
    exclusive: bool = False
    auto_delete: bool = False
    arguments: Mapping[str, Any] = field(default_factory=dict)


def work_queue(name: str) -> list[QueueDeclaration]:
    """The declarations a work queue needs: its dead-letter queue, then itself.

    The work queue dead-letters (``basic.reject`` without requeue) to its
    ``.dlq`` through the default exchange, so a message the worker cannot
    republish with reason headers still lands in the DLQ instead of vanishing.
    https://www.rabbitmq.com/docs/dlx
    """
    dlq = names.dead_letter_queue(name)
    return [
        QueueDeclaration(dlq),
        QueueDeclaration(
            name,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq},
        ),
    ]


def reply_queue(name: str, expires_seconds: float) -> QueueDeclaration:
    """A client's RPC reply queue.

    Durable with ``x-expires`` rather than exclusive: it survives a reconnect of
    its client (results sent meanwhile wait there) and the broker deletes it
    once nobody has used it for ``expires_seconds``. Transient non-exclusive
    queues are avoided because RabbitMQ 4 removed them.
    """
    return QueueDeclaration(name, arguments={"x-expires": int(expires_seconds * 1000)})
