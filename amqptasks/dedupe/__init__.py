"""Run each task id once when the same call is published more than once (the outbox relay).

The transactional outbox publishes a row, waits for the broker's confirm, then
deletes the row; a relay killed in between publishes the row again on its next
pass, with the same task id. Each publish carries its own ``x-publish-id``
header; workers record on a RabbitMQ stream which publish of a task id they saw
first (:mod:`amqptasks.dedupe.stream`), and every worker runs only that one
(:class:`~amqptasks.dedupe.extension.Dedupe`, one of the worker's built-in rules).

Guarantee: within ``worker_dedupe_window`` seconds of the first claim (default
an hour, at most a day), and for the last :data:`~amqptasks.dedupe.book.MAX_CLAIMS`
claims, a later publish of the same task id is acked without running, on every
worker of the broker (now or started later). See docs/django.md#outbox.
"""

from __future__ import annotations

from amqptasks.dedupe.extension import Dedupe

__all__ = ["Dedupe"]
