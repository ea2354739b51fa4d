"""Every derived queue name is made here, and nowhere else."""

from __future__ import annotations

#: Suffix of a work queue's dead-letter queue.
DEAD_LETTER_SUFFIX = ".dlq"
#: Prefix of per-client RPC reply queues.
REPLY_QUEUE_PREFIX = "amqptasks.reply"


def dead_letter_queue(queue: str) -> str:
    """The dead-letter queue of work queue ``queue`` (``<queue>.dlq``)."""
    return f"{queue}{DEAD_LETTER_SUFFIX}"


def reply_queue(app_name: str, client_id: str) -> str:
    """The reply queue of one producer client of app ``app_name``."""
    return f"{REPLY_QUEUE_PREFIX}.{app_name}.{client_id}"
