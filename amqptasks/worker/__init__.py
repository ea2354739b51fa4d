"""The worker: consume, execute, reply, ack."""

from __future__ import annotations

from amqptasks.worker.consumer import EXIT_COLD, EXIT_ERROR, EXIT_OK, Worker

__all__ = ["EXIT_COLD", "EXIT_ERROR", "EXIT_OK", "Worker"]
