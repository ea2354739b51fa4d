"""RabbitMQ definitions JSON for ``rabbitmqctl import_definitions`` (pure).

https://www.rabbitmq.com/docs/definitions
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from amqptasks.topology.model import Declarations


def definitions(declarations: Declarations, vhost: str = "/") -> dict[str, Any]:
    """The exchanges, queues and bindings of ``declarations`` as a definitions document."""
    return {
        "exchanges": [
            {
                "name": e.name,
                "vhost": vhost,
                "type": e.type,
                "durable": e.durable,
                "auto_delete": e.auto_delete,
                "internal": False,
                "arguments": dict(e.arguments),
            }
            for e in declarations.exchanges
        ],
        "queues": [
            {
                "name": q.name,
                "vhost": vhost,
                "durable": q.durable,
                "auto_delete": q.auto_delete,
                "arguments": dict(q.arguments),
            }
            for q in declarations.queues
        ],
        "bindings": [
            {
                "source": b.exchange,
                "vhost": vhost,
                "destination": b.queue,
                "destination_type": "queue",
                "routing_key": b.routing_key,
                "arguments": dict(b.arguments),
            }
            for b in declarations.bindings
        ]
        + [
            {
                "source": b.source,
                "vhost": vhost,
                "destination": b.destination,
                "destination_type": "exchange",
                "routing_key": b.routing_key,
                "arguments": dict(b.arguments),
            }
            for b in declarations.exchange_bindings
        ],
    }
