"""Stop a message whose worker keeps dying from being delivered for ever (poison messages).

Checked first, before anything about the message is decoded, so that nothing a
message holds can get it past the cap. Quorum queues count deliveries themselves
(``x-delivery-count``, set by the broker); on classic queues a redelivered
message is republished to the tail of its queue with our own count in a header,
since a delivered message cannot be changed in place. Which count is trusted
follows the queue's declared type, not the headers: a publisher cannot lower it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amqptasks import constants
from amqptasks.exceptions import TaskError
from amqptasks.logging import get_logger
from amqptasks.worker.decisions import DeadLetter, Defer
from amqptasks.worker.extension import Extension

if TYPE_CHECKING:
    from amqptasks.routing import Router
    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.extension import WorkerContext
    from amqptasks.worker.state import MessageState

log = get_logger(__name__)

#: Seconds a counted copy of a redelivered message waits before it is delivered again.
COPY_DELAY = 1.0


def read_count(value: Any) -> int | None:
    """A delivery count from a header: a whole number >= 0, else None (absent or bad)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str | bytes) and value.strip().isdigit():
        return int(value)
    return None


class DeliveryLimit(Extension):
    """Dead-letter a message delivered more than ``worker_max_deliveries`` times."""

    def __init__(self) -> None:
        self.limit = 0
        self._router: Router | None = None

    async def on_worker_start(self, worker: WorkerContext) -> None:
        self.limit = worker.app.settings.worker_max_deliveries
        self._router = worker.app.router

    def _is_quorum(self, queue: str) -> bool:
        router = self._router
        assert router is not None
        return (router.queue(queue).queue_type or router.default_queue_type) == "quorum"

    def on_received(self, state: MessageState) -> Decision | None:
        delivery = state.delivery
        if not delivery.redelivered:
            return None
        headers = delivery.headers if isinstance(delivery.headers, dict) else {}
        if self._is_quorum(state.queue):
            # The broker's count of earlier deliveries; a redelivered message has one.
            earlier = read_count(headers.get(constants.HEADER_QUORUM_DELIVERY_COUNT))
            deliveries = (earlier if earlier is not None else 1) + 1
            if deliveries <= self.limit:
                return None
        else:
            earlier = read_count(headers.get(constants.HEADER_DELIVERIES))
            deliveries = max(earlier or 1, 1) + 1
            if deliveries <= self.limit:
                log.warning(
                    "task delivered again after a worker stopped mid-task",
                    task_id=state.task_id,
                    deliveries=deliveries,
                )
                # Through the 1 s delay level, not straight back: a copy that came back
                # at once could kill this worker before the original's ack left it, and
                # both would then be redelivered - copies would multiply.
                return Defer(COPY_DELAY, {constants.HEADER_DELIVERIES: deliveries})
        error = TaskError(
            f"delivered {deliveries} times (limit {self.limit}): its workers died or could not "
            f"settle it"
        )
        return DeadLetter(constants.REASON_DELIVERY_LIMIT, error, attempts=deliveries)
