"""The worker's own rules, each a worker extension (see :mod:`amqptasks.worker.extension`).

In the order they are consulted: the delivery cap (before anything is decoded),
workflows (Celery chords refused; chains, callbacks and chord joins carried on
as each delivery is settled), expiry and ETA, redundant publishes (the outbox's:
:mod:`amqptasks.dedupe`), rate limits, retries; then task
signals and result replies, as each delivery is settled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amqptasks.dedupe.extension import Dedupe
from amqptasks.worker.rules.canvas import Workflows
from amqptasks.worker.rules.deliveries import DeliveryLimit
from amqptasks.worker.rules.ratelimits import RateLimits
from amqptasks.worker.rules.replies import ResultReplies
from amqptasks.worker.rules.retries import Retries
from amqptasks.worker.rules.signals import TaskSignals
from amqptasks.worker.rules.timing import Timing

if TYPE_CHECKING:
    from amqptasks.worker.extension import Extension

__all__ = [
    "Dedupe",
    "DeliveryLimit",
    "RateLimits",
    "ResultReplies",
    "Retries",
    "TaskSignals",
    "Timing",
    "Workflows",
    "standard_rules",
]


def standard_rules() -> list[Extension]:
    """A fresh instance of each built-in rule, in order (user extensions come after)."""
    return [
        DeliveryLimit(),
        Workflows(),
        Timing(),
        Dedupe(),
        RateLimits(),
        Retries(),
        TaskSignals(),
        ResultReplies(),
    ]
