"""Broker-held delays: a stack of TTL queues wired with dead-letter exchanges (pure).

Level ``n`` is a topic exchange and a queue, both named ``<prefix>.level.NN``;
the queue holds messages for ``2**n`` seconds (``x-message-ttl``) and then
dead-letters them to the exchange of level ``n - 1`` (level 0 to the
``<prefix>.deliver`` exchange). A delayed message's routing key spells its
delay in binary, most significant bit first, followed by one word naming its
destination::

    0.0. ... .1.0.1.d3f2a9...      (28 bit words, then the destination word)

Each level exchange routes on "its" bit: ``1`` into its queue (wait ``2**n``
seconds), ``0`` straight on to the next level down (an exchange-to-exchange
binding). A message enters at the level of its highest set bit, so a 5 s
delay waits 4 s at level 2 and 1 s at level 0: a handful of hops for any
delay, and no message ever waits behind a longer one (every message in a
level queue has the same TTL, so the head is always the first to expire).

At ``<prefix>.deliver`` the destination word routes the message into a "hop"
queue for that destination: a queue with TTL 0 whose dead-letter exchange and
routing key are the destination's, so the broker itself hands the message to
any exchange type (the default exchange included) with the right routing key.
RabbitMQ rewrites the routing key on dead-lettering only through such a
per-queue ``x-dead-letter-routing-key``, hence one small queue per destination.
https://www.rabbitmq.com/docs/dlx https://www.rabbitmq.com/docs/ttl

Delays are whole seconds: a fraction is rounded up, so a message never runs
before its ETA and runs at most one second (plus hop time) after it.
"""

from __future__ import annotations

import math

from amqptasks.exceptions import ConfigError
from amqptasks.topology import names
from amqptasks.topology.model import (
    BindingDeclaration,
    Declarations,
    Exchange,
    ExchangeBindingDeclaration,
    QueueDeclaration,
)

#: Number of levels: delays up to 2**28 - 1 seconds (about 8.5 years).
LEVELS = 28
#: The longest delay, in seconds.
MAX_DELAY = 2**LEVELS - 1


def delay_seconds(seconds: float) -> int:
    """Whole seconds to wait for a delay of ``seconds``: rounded up, 0 when not positive.

    Raises:
        ConfigError: longer than :data:`MAX_DELAY` or not a finite number.
    """
    if (
        not isinstance(seconds, int | float)
        or isinstance(seconds, bool)
        or (isinstance(seconds, float) and math.isnan(seconds))
    ):
        raise ConfigError(f"a delay must be a number of seconds, got {seconds!r}")
    if seconds <= 0:
        return 0
    if seconds > MAX_DELAY:  # infinities too
        raise ConfigError(
            f"a delay of {seconds} s is longer than the longest supported "
            f"({MAX_DELAY} s, about 8.5 years)"
        )
    return math.ceil(seconds)


def entry_level(seconds: int) -> int:
    """The level a message with this (positive, whole) delay is published to."""
    if seconds < 1:
        raise ValueError("entry_level needs a delay of at least 1 s")
    return seconds.bit_length() - 1


def routing_key(seconds: int, exchange: str, destination_key: str) -> str:
    """The routing key of a delayed message: the delay's bits, then the destination word."""
    bits = ".".join("1" if seconds >> level & 1 else "0" for level in reversed(range(LEVELS)))
    return f"{bits}.{names.delay_destination_word(exchange, destination_key)}"


def _pattern(level: int, bit: str) -> str:
    words = ["*"] * LEVELS
    words[LEVELS - 1 - level] = bit
    return ".".join(words) + ".*"


def level_queue_arguments(level: int, prefix: str, queue_type: str) -> dict[str, object]:
    """The ``x-*`` arguments of the level-``level`` queue."""
    target = (
        names.delay_level(prefix, level - 1) if level > 0 else names.delay_deliver_exchange(prefix)
    )
    arguments: dict[str, object] = {
        "x-message-ttl": (2**level) * 1000,
        "x-dead-letter-exchange": target,
    }
    if queue_type == "quorum":
        # At-least-once dead-lettering needs reject-publish overflow (RabbitMQ 3.10+).
        arguments.update(
            {
                "x-queue-type": "quorum",
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        )
    return arguments


def infrastructure(
    prefix: str = names.DELAY_PREFIX,
    queue_type: str = "classic",
) -> Declarations:
    """The shared delay levels and the deliver exchange (one stack per vhost)."""
    exchanges = [Exchange(names.delay_deliver_exchange(prefix), "topic")]
    queues: list[QueueDeclaration] = []
    bindings: list[BindingDeclaration] = []
    exchange_bindings: list[ExchangeBindingDeclaration] = []
    for level in range(LEVELS):
        name = names.delay_level(prefix, level)
        exchanges.append(Exchange(name, "topic"))
        queues.append(
            QueueDeclaration(name, arguments=level_queue_arguments(level, prefix, queue_type))
        )
        bindings.append(BindingDeclaration(name, name, _pattern(level, "1")))
        lower = (
            names.delay_level(prefix, level - 1)
            if level > 0
            else names.delay_deliver_exchange(prefix)
        )
        exchange_bindings.append(ExchangeBindingDeclaration(lower, name, _pattern(level, "0")))
    return Declarations(
        exchanges=tuple(exchanges),
        queues=tuple(queues),
        bindings=tuple(bindings),
        exchange_bindings=tuple(exchange_bindings),
    )


def hop(prefix: str, exchange: str, destination_key: str) -> Declarations:
    """The hop queue (and its binding) that delivers delayed messages to one destination."""
    queue = names.delay_hop_queue(prefix, exchange, destination_key)
    word = names.delay_destination_word(exchange, destination_key)
    arguments = {
        "x-message-ttl": 0,
        "x-dead-letter-exchange": exchange,
        "x-dead-letter-routing-key": destination_key,
    }
    deliver = names.delay_deliver_exchange(prefix)
    return Declarations(
        queues=(QueueDeclaration(queue, arguments=arguments),),
        bindings=(BindingDeclaration(queue, deliver, ".".join(["*"] * LEVELS + [word])),),
    )
