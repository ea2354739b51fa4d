"""resolve_route: where a task message is published."""

from __future__ import annotations

from amqptasks.routing import Route, resolve_route


def test_app_default_queue() -> None:
    assert resolve_route(task_queue=None, default_queue="default") == Route(
        "", "default", "default"
    )


def test_task_queue_wins_over_app_default() -> None:
    assert resolve_route(task_queue="emails", default_queue="default") == Route(
        "", "emails", "emails"
    )


def test_call_queue_wins_over_task_queue() -> None:
    assert resolve_route(task_queue="emails", default_queue="default", queue="urgent") == Route(
        "", "urgent", "urgent"
    )


def test_exchange_with_routing_key() -> None:
    assert resolve_route(
        task_queue="emails", default_queue="default", exchange="events", routing_key="user.created"
    ) == Route("events", "user.created", None)


def test_exchange_routing_key_defaults_to_the_queue_name() -> None:
    assert resolve_route(task_queue="emails", default_queue="default", exchange="events") == Route(
        "events", "emails", None
    )
    assert resolve_route(
        task_queue=None, default_queue="default", queue="urgent", exchange="events"
    ) == Route("events", "urgent", None)


def test_routing_key_alone_names_the_queue_on_the_default_exchange() -> None:
    assert resolve_route(task_queue=None, default_queue="default", routing_key="reports") == Route(
        "", "reports", "reports"
    )


def test_routing_key_equal_to_the_queue() -> None:
    assert resolve_route(
        task_queue=None, default_queue="default", queue="q", routing_key="q"
    ) == Route("", "q", "q")
