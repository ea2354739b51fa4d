"""Django ``@task`` functions (Django's own task API), run by amqptasks workers."""

from __future__ import annotations

from typing import Any

try:
    from django.tasks import task  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from django_tasks import task

from tests.integration.djangoproj.shop.models import Order


@task()
def place_order(reference: str) -> dict[str, Any]:
    """Create an order; return what Django's result API reads back."""
    order = Order.objects.create(reference=reference)
    return {"id": order.pk, "reference": order.reference}


@task(takes_context=True)
def who_am_i(context: Any) -> str:
    """The task's own result id, as Django's task context gives it."""
    return str(context.task_result.id)


@task()
def refuse(reason: str) -> None:
    """Fails: Django's result API reports FAILED with the exception's class."""
    raise ValueError(reason)
