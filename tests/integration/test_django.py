"""Django on SQLite with a real node: discovery, ``delay_on_commit``, connections in the worker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pika
import pytest

from amqptasks._current import set_current
from tests.integration.django_fixtures import django_project, django_worker_env

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.integration.conftest import WorkerProcess

__all__ = ["django_project", "django_worker_env"]

pytestmark = pytest.mark.integration

APP = "tests.integration.djangoproj.amqptasks:app"


@pytest.fixture
def django_worker(
    start_worker: Callable[..., WorkerProcess], django_worker_env: dict[str, str]
) -> Callable[..., WorkerProcess]:
    def start(*args: str) -> WorkerProcess:
        return start_worker(*args, app=APP, env=django_worker_env)

    return start


def test_settings_come_from_the_namespace(django_project: Any) -> None:
    from django.conf import settings

    app = django_project.app
    assert app.settings.default_queue == settings.AMQPTASKS_DEFAULT_QUEUE
    assert app.settings.task_max_retries == 0
    # Django's own names (SECRET_KEY, ...) are not read as settings.


def test_autodiscovery_finds_tasks_in_two_installed_apps(
    django_project: Any, django_worker: Callable[..., WorkerProcess]
) -> None:
    from tests.integration.djangoproj.mail.tasks import greeting
    from tests.integration.djangoproj.shop.tasks import count_orders

    app = django_project.app
    # In a project the app is the only one; this test process has made others since.
    set_current(app)
    assert "tests.integration.djangoproj.shop.tasks.count_orders" in app.tasks
    assert "tests.integration.djangoproj.mail.tasks.greeting" in app.tasks

    worker = django_worker("-c", "2")
    assert greeting.delay("ada").get(timeout=20) == "hello ada"  # shared task, other app
    assert count_orders.delay("none").get(timeout=20) == 0
    assert "count_orders" in worker.log() and "greeting" in worker.log()


def _depth(broker_url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def test_delay_on_commit_publishes_nothing_on_rollback_and_once_on_commit(
    django_project: Any, amqp: Any, queue_name: str, broker_url: str
) -> None:
    from django.db import transaction

    from tests.integration.djangoproj.shop.models import Order
    from tests.integration.djangoproj.shop.tasks import count_orders

    amqp.queue_declare(queue_name, durable=True)

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        order = Order.objects.create(reference="rolled-back")
        count_orders.apply_async_on_commit((order.reference,), queue=queue_name)
        raise Rollback
    assert _depth(broker_url, queue_name) == 0

    with transaction.atomic():
        order = Order.objects.create(reference="committed")
        count_orders.apply_async_on_commit((order.reference,), queue=queue_name)
        assert _depth(broker_url, queue_name) == 0  # not before the commit
    assert _depth(broker_url, queue_name) == 1


def test_delay_on_commit_runs_the_task_after_the_commit(
    django_project: Any, django_worker: Callable[..., WorkerProcess]
) -> None:
    from django.db import transaction

    from amqptasks import AsyncResult, signals
    from tests.integration.djangoproj.shop.models import Order
    from tests.integration.djangoproj.shop.tasks import count_orders

    django_worker("--extension", "amqptasks.contrib.django.worker:DjangoWorker")
    sent: list[str] = []

    def on_publish(sender: object, task_id: str, **_: Any) -> None:
        sent.append(task_id)

    signals.after_publish.connect(on_publish)
    try:
        with transaction.atomic():
            Order.objects.create(reference="seen-by-worker")
            count_orders.delay_on_commit("seen-by-worker")
            assert sent == []
        assert len(sent) == 1
    finally:
        signals.after_publish.disconnect(on_publish)
    # The worker, in its own process, sees the committed row.
    assert AsyncResult(sent[0], store=django_project.app.results).get(timeout=20) == 1


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_a_task_after_the_connection_was_closed_under_it_still_works(
    django_project: Any, django_worker: Callable[..., WorkerProcess], pool: str
) -> None:
    from tests.integration.djangoproj.shop.models import Order
    from tests.integration.djangoproj.shop.tasks import count_orders, drop_connection

    Order.objects.create(reference=f"after-drop-{pool}")
    # One runner, so both calls use the same thread (and its connection).
    django_worker("--pool", pool, "-c", "1")
    assert drop_connection.delay().get(timeout=20) == "dropped"
    assert count_orders.delay(f"after-drop-{pool}").get(timeout=20) == 1
