"""Operating a fleet: Celery's events and pidbox remote control, sticky revokes, metrics.

See docs/monitoring.md. The worker side is the :class:`~amqptasks.control.fleet.Fleet`
extension (``amqptasks worker -E --control``); the client side is
:mod:`amqptasks.control.client` (``amqptasks inspect|control``).
"""

from __future__ import annotations

from amqptasks.control.fleet import Fleet, attach

__all__ = ["Fleet", "attach"]
