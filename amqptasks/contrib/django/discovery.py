"""Django's side of ``app.autodiscover_tasks()``: set Django up, list the installed apps."""

from __future__ import annotations

import os

from amqptasks.contrib.django import connections
from amqptasks.exceptions import ConfigError

__all__ = ["installed_apps", "setup"]


def setup() -> None:
    """``django.setup()`` unless done, from ``DJANGO_SETTINGS_MODULE``; then the worker clean-up.

    Raises:
        ConfigError: Django is not installed, or neither ``DJANGO_SETTINGS_MODULE``
            nor ``settings.configure()`` says where the settings are.
    """
    try:
        import django
        from django.apps import apps
        from django.conf import settings
    except ImportError as exc:
        raise ConfigError(f"the Django integration needs Django installed: {exc}") from None
    if not apps.ready:
        if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
            raise ConfigError(
                "Django settings are not configured: set DJANGO_SETTINGS_MODULE "
                "(os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'proj.settings'))"
            )
        django.setup()
    connections.install()


def installed_apps() -> list[str]:
    """The packages of ``INSTALLED_APPS``, Django set up first (see :func:`setup`)."""
    from django.apps import apps

    setup()
    # The runner of Django @task calls (a shared task: bound by the discovery).
    from amqptasks.contrib.django import runner  # noqa: F401

    return [config.name for config in apps.get_app_configs()]
