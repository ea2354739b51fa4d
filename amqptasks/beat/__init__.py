"""Periodic tasks: schedules, entries, and a beat that sends each occurrence once.

See docs/periodic-tasks.md. ``schedules`` and ``entries`` are pure; the
scheduler, leader election and history talk to the broker.
"""

from __future__ import annotations

from amqptasks.beat.decorator import periodic
from amqptasks.beat.entries import Entry, occurrence_id
from amqptasks.beat.schedules import Schedule, at, cron, crontab, every

__all__ = ["Entry", "Schedule", "at", "cron", "crontab", "every", "occurrence_id", "periodic"]
