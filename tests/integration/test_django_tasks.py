"""Django's task API (``django.tasks`` / the ``django-tasks`` backport) through amqptasks."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.django_fixtures import django_project, django_worker_env

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.integration.conftest import WorkerProcess

__all__ = ["django_project", "django_worker_env"]

pytestmark = pytest.mark.integration

APP = "tests.integration.djangoproj.amqptasks:app"


def _finished(result: Any, timeout: float = 20.0) -> Any:
    """``result.refresh()`` until it is no longer READY/RUNNING (Django's way of waiting)."""
    deadline = time.monotonic() + timeout
    while result.status in ("READY", "RUNNING"):
        assert time.monotonic() < deadline, f"{result.id} still {result.status}"
        time.sleep(0.05)
        result.refresh()
    return result


def test_a_django_task_runs_on_a_worker_and_its_result_is_read_back(
    django_project: Any,
    start_worker: Callable[..., WorkerProcess],
    django_worker_env: dict[str, str],
) -> None:
    from tests.integration.djangoproj.shop.jobs import place_order, refuse, who_am_i
    from tests.integration.djangoproj.shop.models import Order

    start_worker(app=APP, env=django_worker_env)
    result = place_order.enqueue("via-django-tasks")
    assert result.status == "READY"
    _finished(result)
    assert result.status == "SUCCESSFUL"
    value = result.return_value
    assert value["reference"] == "via-django-tasks"
    assert Order.objects.get(pk=value["id"]).reference == "via-django-tasks"  # the worker wrote it
    # Django's own lookup by id reads the same state.
    assert place_order.get_result(result.id).return_value == value

    context = _finished(who_am_i.enqueue())
    assert context.return_value == context.id

    failed = _finished(refuse.enqueue("no stock"))
    assert failed.status == "FAILED"
    assert failed.errors[0].exception_class_path.endswith("ValueError")
    assert "no stock" in failed.errors[0].traceback


def test_the_task_api_is_djangos_own_from_django_6(django_project: Any) -> None:
    """Django 6 (Python 3.12+) brings ``django.tasks``; before it the backport serves."""
    import django

    from amqptasks.contrib.django._api import tasks_api
    from tests.integration.djangoproj.shop.jobs import place_order

    own = django.VERSION >= (6,)
    # deploy/local/test-django6 requires Django's own module (it runs on Django 6).
    expected = os.environ.get("AMQPTASKS_TEST_DJANGO_TASKS_MODULE") or (
        "django.tasks" if own else "django_tasks"
    )
    assert tasks_api().Task.__module__.startswith(f"{expected}."), django.get_version()
    assert isinstance(place_order, tasks_api().Task)
    print(f"Django {django.get_version()}: task API from {expected}")
