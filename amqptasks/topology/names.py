"""Every derived queue and exchange name is made here, and nowhere else."""

from __future__ import annotations

import hashlib

#: Suffix of a work queue's dead-letter queue.
DEAD_LETTER_SUFFIX = ".dlq"
#: Prefix of per-client RPC reply queues.
REPLY_QUEUE_PREFIX = "amqptasks.reply"


def dead_letter_queue(queue: str) -> str:
    """The dead-letter queue of work queue ``queue`` (``<queue>.dlq``)."""
    return f"{queue}{DEAD_LETTER_SUFFIX}"


def reply_queue(app_name: str, client_id: str, purpose: str = "") -> str:
    """A reply queue of one producer client of app ``app_name``.

    Results come to the one without a ``purpose``; a client may open others
    (``control`` replies, say) named after what they receive.
    """
    base = f"{REPLY_QUEUE_PREFIX}.{app_name}.{client_id}"
    return f"{base}.{purpose}" if purpose else base


#: Default prefix of the shared delay exchanges and queues (setting ``delay_prefix``).
DELAY_PREFIX = "amqptasks.delay"


def delay_level(prefix: str, level: int) -> str:
    """Exchange and queue of delay level ``level`` (they share the name)."""
    return f"{prefix}.level.{level:02d}"


def delay_deliver_exchange(prefix: str) -> str:
    """The exchange a delayed message reaches when its time has come."""
    return f"{prefix}.deliver"


def delay_destination_word(exchange: str, routing_key: str) -> str:
    """One routing-key word standing for a destination (exchange, routing key).

    A digest rather than the names themselves: topic patterns treat ``.``,
    ``*`` and ``#`` specially, and a digest has none of them.
    """
    digest = hashlib.sha256(f"{exchange}\x00{routing_key}".encode()).hexdigest()
    return f"d{digest[:20]}"


def delay_hop_queue(prefix: str, exchange: str, routing_key: str) -> str:
    """The queue that hands delayed messages to one destination (TTL 0, dead-letters there)."""
    readable = f"{exchange or 'default'}.{routing_key}"
    word = delay_destination_word(exchange, routing_key)
    head = f"{prefix}.hop."
    room = 255 - len(head.encode()) - len(word) - 1
    trimmed = readable.encode()[: max(room, 0)].decode(errors="ignore")
    return f"{head}{trimmed}.{word}"


#: Prefix of the per-chord queues that gather a chord's results on the broker.
CHORD_PREFIX = "amqptasks.chord"


def chord_results(chord_id: str) -> str:
    """The queue where the members of chord ``chord_id`` leave their results."""
    return f"{CHORD_PREFIX}.{chord_id}.results"


def chord_token(chord_id: str) -> str:
    """The queue holding chord ``chord_id``'s one join token (who holds it may join)."""
    return f"{CHORD_PREFIX}.{chord_id}.token"
