"""One delivery on its way through the worker: what is known of it so far."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from amqptasks.policies.limits import TimeLimits
    from amqptasks.protocol.envelope import TaskMessage
    from amqptasks.request import Request
    from amqptasks.task import Task
    from amqptasks.transport.consumer import Delivery
    from amqptasks.worker.acks import Settlement
    from amqptasks.worker.outcome import Outcome


class MessageState:
    """A delivery and what the worker learned about it, stage by stage.

    Extensions read it at each point of the lifecycle (see
    :class:`~amqptasks.worker.extension.Extension`); fields are ``None`` until
    their stage is reached: ``message`` and ``task`` once decoded, ``request``,
    ``limits`` and ``acks_early`` before the run, ``outcome`` after it.
    """

    __slots__ = (
        "acks_early",
        "delivery",
        "limits",
        "message",
        "notes",
        "outcome",
        "queue",
        "received_at",
        "request",
        "settlement",
        "started_at",
        "task",
    )

    def __init__(self, delivery: Delivery, queue: str, settlement: Settlement) -> None:
        #: The message as the broker delivered it (body, properties, headers).
        self.delivery = delivery
        #: The queue it was consumed from.
        self.queue = queue
        #: Wall-clock time it reached the worker's handler.
        self.received_at = time.time()
        #: Settles the delivery exactly once (the handler's business).
        self.settlement = settlement
        #: The decoded task message.
        self.message: TaskMessage | None = None
        #: The registered task it names.
        self.task: Task[Any, Any] | None = None
        #: What the task sees as ``self.request``.
        self.request: Request | None = None
        #: The call's ``(soft, hard)`` time limits.
        self.limits: TimeLimits | None = None
        #: Acked before it runs (at-most-once).
        self.acks_early = False
        #: Wall-clock time the call started: set by the pool as it starts (in the
        #: thread that runs it, just before the body), before the ``on_start`` hooks.
        self.started_at: float | None = None
        #: How the call ended.
        self.outcome: Outcome | None = None
        #: Per-delivery data of extensions, by key (see :meth:`note`).
        self.notes: dict[str, Any] | None = None

    @property
    def task_id(self) -> str | None:
        """The task id: from the decoded message, else from the raw delivery."""
        if self.message is not None:
            return self.message.id
        headers = self.delivery.headers or {}
        found = headers.get("id")
        if isinstance(found, str) and found:
            return found
        return self.delivery.correlation_id or self.delivery.message_id or None

    def note(self, key: str, value: Any) -> None:
        """Keep ``value`` with this delivery under ``key`` (one namespace per extension)."""
        if self.notes is None:
            self.notes = {}
        self.notes[key] = value

    def noted(self, key: str, default: Any = None) -> Any:
        """What :meth:`note` kept under ``key``."""
        if self.notes is None:
            return default
        return self.notes.get(key, default)

    def __repr__(self) -> str:
        return f"<MessageState {self.task_id} queue={self.queue}>"
