"""The worker extension of the Django integration.

``app.autodiscover_tasks()`` turns the connection clean-up on by itself (in the
worker and in each ``processes`` pool child). Load this extension when tasks
are not discovered that way, or to have Django set up before the first delivery::

    AMQPTASKS_WORKER_EXTENSIONS = ["amqptasks.contrib.django.worker:DjangoWorker"]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amqptasks.contrib.django import discovery
from amqptasks.worker.extension import Extension

if TYPE_CHECKING:
    from amqptasks.worker.extension import WorkerContext

__all__ = ["DjangoWorker"]


class DjangoWorker(Extension):
    """Sets Django up (``DJANGO_SETTINGS_MODULE``) and closes stale connections around tasks.

    Connections are closed before and after each plain-function task in the
    thread that runs it (see :mod:`amqptasks.contrib.django.connections`).
    The worker's event loop thread never queries: Django refuses synchronous
    queries there.
    """

    async def on_worker_start(self, worker: WorkerContext) -> None:
        discovery.setup()
