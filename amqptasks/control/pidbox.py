"""Celery's remote-control ("pidbox") protocol, as ``kombu.pidbox.Mailbox`` speaks it.

A client (``celery inspect ping``) publishes ``{"method", "arguments",
"destination", "pattern", "matcher", "ticket", "reply_to"}`` to the
``celery.pidbox`` fanout exchange; every worker's ``<hostname>.celery.pidbox``
queue gets a copy. A worker named in ``destination`` (or every worker, when it
is empty) runs the command and, when there is a ``reply_to``, publishes
``{hostname: answer}`` to ``reply_to["exchange"]`` (``reply.celery.pidbox``,
direct) with ``reply_to["routing_key"]`` and a ``ticket`` header, which the
client matches. A message whose ``expires`` header has passed is ignored.

Celery declares its pidbox queues exclusive; ours are durable with a short
``x-expires`` instead, because the worker consumes them on a connection of its
own (RabbitMQ 4.3 denies transient non-exclusive queues:
https://www.rabbitmq.com/docs/deprecated-features#transient_nonexcl_queues).
"""

from __future__ import annotations

import fnmatch
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from amqptasks.exceptions import DecodeError
from amqptasks.protocol import serializers
from amqptasks.protocol.envelope import OutgoingMessage
from amqptasks.topology.model import BindingDeclaration, Declarations, Exchange, QueueDeclaration

__all__ = [
    "CONTROL_EXCHANGE",
    "REPLY_EXCHANGE",
    "ControlRequest",
    "pidbox_declarations",
    "pidbox_queue",
    "reply_message",
]

#: Where commands are broadcast (``control_exchange`` setting, "celery").
CONTROL_EXCHANGE = Exchange("celery.pidbox", "fanout", durable=False)
#: Where answers go (the client's reply queue is bound to it by its oid).
REPLY_EXCHANGE = Exchange("reply.celery.pidbox", "direct", durable=False)
#: Milliseconds a pidbox queue outlives its worker, and a command waits in it (Celery's
#: ``control_queue_expires`` is 10 s, ``control_queue_ttl`` 300 s).
QUEUE_EXPIRES_MS = 10_000
MESSAGE_TTL_MS = 300_000
#: Content types a command may come in (Celery sends the app's task serializer).
ACCEPT = ("json", "msgpack")


def pidbox_queue(hostname: str) -> str:
    """The pidbox queue of worker ``hostname``."""
    return f"{hostname}.celery.pidbox"


def pidbox_declarations(hostname: str) -> Declarations:
    """The control exchange and this worker's pidbox queue bound to it."""
    queue = pidbox_queue(hostname)
    return Declarations(
        exchanges=(CONTROL_EXCHANGE, REPLY_EXCHANGE),
        queues=(
            QueueDeclaration(
                queue,
                durable=True,
                arguments={"x-expires": QUEUE_EXPIRES_MS, "x-message-ttl": MESSAGE_TTL_MS},
            ),
        ),
        bindings=(BindingDeclaration(queue, CONTROL_EXCHANGE.name, ""),),
    )


@dataclass(frozen=True)
class ControlRequest:
    """A command as broadcast."""

    method: str
    arguments: dict[str, Any]
    destination: list[str] | None
    pattern: str | None
    matcher: str | None
    ticket: str | None
    reply_exchange: str | None
    reply_routing_key: str | None
    #: The serializer it came in (the reply is sent in the same).
    serializer: serializers.SerializerInfo

    @classmethod
    def parse(
        cls, body: bytes, content_type: str | None, headers: dict[str, Any] | None
    ) -> ControlRequest | None:
        """The command in a pidbox message; None when it expired.

        Raises:
            DecodeError: not a command.
        """
        expires = (headers or {}).get("expires")
        if isinstance(expires, int | float) and expires and time.time() > expires:
            return None
        info = serializers.decoder_for(content_type, ACCEPT)
        data = info.serializer.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("method"), str):
            raise DecodeError("not a pidbox command", content_type=content_type or "")
        reply_to = data.get("reply_to") if isinstance(data.get("reply_to"), dict) else None
        destination = data.get("destination")
        return cls(
            method=data["method"],
            arguments=dict(data.get("arguments") or {}),
            destination=list(destination) if destination else None,
            pattern=data.get("pattern"),
            matcher=data.get("matcher"),
            ticket=data.get("ticket"),
            reply_exchange=reply_to.get("exchange") if reply_to else None,
            reply_routing_key=reply_to.get("routing_key") if reply_to else None,
            serializer=info,
        )

    def is_for(self, hostname: str) -> bool:
        """Whether worker ``hostname`` should run it (kombu's ``Node.handle_message``)."""
        if self.destination:
            return hostname in self.destination
        if self.pattern and self.matcher:
            if self.matcher == "glob":
                return fnmatch.fnmatch(hostname, self.pattern)
            if self.matcher == "pcre":
                return re.search(self.pattern, hostname) is not None
            return False
        return True

    @property
    def wants_reply(self) -> bool:
        """A client waits for the answer."""
        return bool(self.ticket and self.reply_exchange and self.reply_routing_key)


def reply_message(
    request: ControlRequest, hostname: str, answer: Any, clock: int
) -> OutgoingMessage:
    """``{hostname: answer}`` to the client that asked (transient, like kombu's)."""
    assert request.reply_exchange is not None and request.reply_routing_key is not None
    info = request.serializer
    return OutgoingMessage(
        exchange=request.reply_exchange,
        routing_key=request.reply_routing_key,
        body=info.serializer.dumps({hostname: answer}),
        content_type=info.content_type,
        content_encoding=info.content_encoding,
        headers={"ticket": request.ticket, "clock": clock},
        message_id=str(uuid.uuid4()),
        delivery_mode=1,
    )
