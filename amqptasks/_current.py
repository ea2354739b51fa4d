"""The current app: the one most recently made (as Celery's ``current_app``).

Kept apart from :mod:`amqptasks.app` so that integrations binding tasks lazily
(:func:`amqptasks.contrib.django.shared_task`) need not import it.
"""

from __future__ import annotations

import weakref
from typing import Any

_current: weakref.ref[Any] | None = None


def set_current(app: object) -> None:
    """Make ``app`` the current app (``App()`` does this as it is made)."""
    global _current
    _current = weakref.ref(app)


def get_current() -> Any | None:
    """The current app, or None when no app was made (or it was garbage-collected)."""
    return _current() if _current is not None else None
