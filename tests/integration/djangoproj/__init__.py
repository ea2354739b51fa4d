"""A Django project laid out as Celery users know it (``proj/amqptasks.py``).

As in Celery's layout, the package imports its app, so the app is made while
Django imports the settings (before the installed apps can be imported).
"""

from __future__ import annotations

from tests.integration.djangoproj.amqptasks import app

__all__ = ["app"]
