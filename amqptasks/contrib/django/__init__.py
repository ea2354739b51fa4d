"""Django integration: settings namespace, task discovery, ``on_commit``, worker clean-up.

The layout Celery users know::

    # proj/amqptasks.py
    import os
    from amqptasks import App

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
    app = App("proj")
    app.config_from_object("django.conf:settings", namespace="AMQPTASKS")
    app.autodiscover_tasks()

See docs/django.md. Django itself is imported only when a function here needs it.
"""

from __future__ import annotations

from amqptasks.shared import shared_task

__all__ = ["shared_task"]
