"""The worker: consume, execute, reply, ack; extended through :class:`Extension`."""

from __future__ import annotations

from amqptasks.worker.decisions import (
    CannotSettle,
    DeadLetter,
    Decision,
    Defer,
    Finish,
    Requeue,
    RetryLater,
    Skip,
)
from amqptasks.worker.extension import Extension, WorkerContext
from amqptasks.worker.options import WorkerOptions
from amqptasks.worker.state import MessageState
from amqptasks.worker.worker import EXIT_COLD, EXIT_ERROR, EXIT_OK, Worker

__all__ = [
    "EXIT_COLD",
    "EXIT_ERROR",
    "EXIT_OK",
    "CannotSettle",
    "DeadLetter",
    "Decision",
    "Defer",
    "Extension",
    "Finish",
    "MessageState",
    "Requeue",
    "RetryLater",
    "Skip",
    "Worker",
    "WorkerContext",
    "WorkerOptions",
]
