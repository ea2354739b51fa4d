"""How a worker's prefetch budget is shared between the queues it consumes (pure).

The budget is ``concurrency x prefetch multiplier`` unacked deliveries per
worker. RabbitMQ's per-consumer QoS (``basic.qos`` with ``global=False``, the
only kind quorum queues support, and what RabbitMQ 4 keeps) limits each
consumer separately, so a worker that gave every queue the whole budget could
hold ``budget x queues`` messages. Instead the budget is divided: each
consumer gets its share on a channel of its own, so the sum never exceeds the
budget - except that every consumer needs at least 1, so a worker consuming
more queues than its budget holds one per queue.
"""

from __future__ import annotations


def split_prefetch(budget: int, queues: int) -> list[int]:
    """Per-consumer prefetch counts for ``queues`` consumers sharing ``budget``.

    The first ``budget % queues`` consumers get one more than the others.

    >>> split_prefetch(8, 3)
    [3, 3, 2]
    >>> split_prefetch(2, 3)
    [1, 1, 1]
    """
    if budget < 1 or queues < 1:
        raise ValueError(f"need a budget and a queue count >= 1, got {budget}, {queues}")
    base, extra = divmod(budget, queues)
    return [max(1, base + (1 if index < extra else 0)) for index in range(queues)]
