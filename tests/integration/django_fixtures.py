"""The test Django project, set up once per session on an SQLite file, its worker's env.

Import the fixtures into a test module: ``from tests.integration.django_fixtures import
django_project, django_worker_env``.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="session")
def django_project(broker_env: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``tests.integration.djangoproj`` set up with its tables; returns its amqptasks module.

    Each test module imports this fixture, which makes it one fixture per module:
    Django is set up by the first only (settings cannot be loaded twice).
    """
    if "AMQPTASKS_TEST_DJANGO_DB" in os.environ:
        from tests.integration.djangoproj import amqptasks as project

        yield project
        return
    import django
    from django.core.management import call_command

    db: Path = tmp_path_factory.mktemp("django") / "db.sqlite3"
    os.environ["AMQPTASKS_TEST_DJANGO_DB"] = str(db)
    os.environ["AMQPTASKS_TEST_DJANGO_QUEUE"] = f"djangoproj-{uuid.uuid4().hex[:8]}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.integration.djangoproj.settings"
    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0)
    from tests.integration.djangoproj import amqptasks

    yield amqptasks
    amqptasks.app.close()
    # Later modules' copies of this fixture find Django set up already.


@pytest.fixture
def django_worker_env(django_project: Any) -> dict[str, str]:
    """What a worker subprocess needs to run the project (its database, its queue)."""
    return {
        name: os.environ[name]
        for name in (
            "AMQPTASKS_TEST_DJANGO_DB",
            "AMQPTASKS_TEST_DJANGO_QUEUE",
            "DJANGO_SETTINGS_MODULE",
        )
    }
