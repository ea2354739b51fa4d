"""pytest fixtures for projects that use amqptasks: their tasks run eagerly, no broker.

Load it from your ``conftest.py`` and say which app is yours::

    pytest_plugins = ["amqptasks.testing.pytest_plugin"]

    @pytest.fixture
    def amqptasks_app():
        from proj import app
        return app

Then a test asks for ``eager_app``: ``.delay()`` runs the task in-process, through
the same serialization round trip, retries and result as a worker, and a task
that fails raises at the call (``task_eager_propagates``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from amqptasks.testing.eager import eager_mode

if TYPE_CHECKING:
    from collections.abc import Iterator

    from amqptasks.app import App


@pytest.fixture
def amqptasks_app() -> App:
    """Your app: override this fixture in your ``conftest.py`` to return it."""
    raise pytest.UsageError(
        "amqptasks_app: define a fixture of that name in your conftest.py that returns "
        "your App (e.g. `from proj import app; return app`)"
    )


@pytest.fixture
def eager_app(amqptasks_app: App) -> Iterator[App]:
    """``amqptasks_app`` in eager mode for the test (failures raise at the call)."""
    with eager_mode(amqptasks_app, propagates=True) as app:
        yield app
