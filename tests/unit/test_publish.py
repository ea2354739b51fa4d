"""prepare_call: per-call options resolved into a message (pure, no broker)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from amqptasks.config import Settings
from amqptasks.exceptions import ConfigError
from amqptasks.publishing import PreparedCall, prepare_call, to_utc_iso
from amqptasks.request import Request, current_request
from amqptasks.routing import Route, Router
from amqptasks.topology.model import Exchange, Queue

REPLY = "amqptasks.reply.t.abc"


def _settings(**given: Any) -> Settings:
    return Settings.build({"broker_url": "amqp://guest:guest@127.0.0.1:1//", **given}, environ={})


def _router(settings: Settings) -> Router:
    """The router App builds from these settings."""
    return Router(
        queues=settings.queues,
        routes=settings.routes,
        default_queue=settings.default_queue,
        default_exchange=settings.default_exchange,
        default_queue_type=settings.default_queue_type,
    )


def _prepare(settings: Settings | None = None, **options: Any) -> PreparedCall:
    settings = settings or _settings()
    options.setdefault("args", (1, 2))
    options.setdefault("kwargs", None)
    options.setdefault("reply_to", REPLY)
    options.setdefault("task_name", "proj.add")
    return prepare_call(settings=settings, router=_router(settings), **options)


def test_defaults() -> None:
    call = _prepare()
    message = call.message
    assert call.wants_result is True
    assert message.reply_to == REPLY
    assert (message.exchange, message.routing_key) == ("", "default")
    assert call.route == Route("", "default", Queue("default"))
    assert message.headers["task"] == "proj.add"
    assert str(uuid.UUID(message.message_id)) == message.message_id
    assert uuid.UUID(message.message_id).version == 4
    assert message.headers["id"] == message.message_id == message.correlation_id
    assert message.headers["root_id"] == message.message_id
    assert message.headers["parent_id"] is None
    assert message.headers["expires"] is None
    assert message.priority is None
    assert json.loads(message.body)[:2] == [[1, 2], {}]


def test_each_call_gets_a_new_id_unless_given() -> None:
    assert _prepare().message.message_id != _prepare().message.message_id
    assert _prepare(task_id="my-id").message.message_id == "my-id"


@pytest.mark.parametrize("priority", [0, 9, 255])
def test_priority_in_range(priority: int) -> None:
    assert _prepare(priority=priority).message.priority == priority


@pytest.mark.parametrize("priority", [-1, 256, 1000, "5", 2.0, True])
def test_priority_out_of_range(priority: object) -> None:
    with pytest.raises(ConfigError, match="priority"):
        _prepare(priority=priority)


def test_expires_in_seconds_is_an_absolute_utc_time() -> None:
    before = dt.datetime.now(dt.timezone.utc)
    header = _prepare(expires=60).message.headers["expires"]
    after = dt.datetime.now(dt.timezone.utc)
    when = dt.datetime.fromisoformat(header)
    assert when.utcoffset() == dt.timedelta(0)
    assert before + dt.timedelta(seconds=60) <= when <= after + dt.timedelta(seconds=60)


def test_expires_naive_datetime_is_utc() -> None:
    header = _prepare(expires=dt.datetime(2030, 1, 2, 3, 4, 5)).message.headers["expires"]
    assert header == "2030-01-02T03:04:05+00:00"


def test_expires_aware_datetime_is_converted_to_utc() -> None:
    paris_summer = dt.timezone(dt.timedelta(hours=2))
    when = dt.datetime(2030, 6, 1, 14, 0, tzinfo=paris_summer)
    assert _prepare(expires=when).message.headers["expires"] == "2030-06-01T12:00:00+00:00"


@pytest.mark.parametrize("expires", ["tomorrow", dt.timedelta(seconds=5), True])
def test_expires_of_another_type_is_refused(expires: object) -> None:
    with pytest.raises(ConfigError, match="seconds or a datetime"):
        _prepare(expires=expires)


def test_to_utc_iso_counts_from_now() -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    assert to_utc_iso(90.5, now=now) == "2030-01-01T00:01:30.500000+00:00"


def test_ignore_result_drops_reply_to() -> None:
    call = _prepare(ignore_result=True)
    assert call.wants_result is False
    assert call.message.reply_to is None
    assert call.message.headers["ignore_result"] is True


def test_ignore_result_from_the_task_and_from_settings() -> None:
    assert _prepare(task_ignore_result=True).message.reply_to is None
    settings = _settings(task_ignore_result=True)
    assert _prepare(settings).message.reply_to is None
    # The call's own choice wins over the task's and the app's.
    assert _prepare(settings, task_ignore_result=True, ignore_result=False).wants_result is True


@pytest.mark.parametrize("args", ["ab", b"ab", 5, {"x": 1}.items()])
def test_args_must_be_a_sequence(args: object) -> None:
    with pytest.raises(ConfigError, match="args must be a list or tuple"):
        _prepare(args=args)


def test_kwargs_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="kwargs must be a mapping"):
        _prepare(kwargs=[("x", 1)])


def test_serializer_and_compression_resolution() -> None:
    settings = _settings(task_serializer="yaml", task_compression="bz2")
    message = _prepare(settings).message
    assert message.content_type == "application/x-yaml"
    assert message.headers["compression"] == "application/x-bz2"
    message = _prepare(settings, task_serializer="msgpack", task_compression="lzma").message
    assert message.content_type == "application/x-msgpack"
    assert message.headers["compression"] == "application/x-lzma"
    message = _prepare(
        settings,
        task_serializer="msgpack",
        serializer="json",
        task_compression="lzma",
        compression="zlib",
    ).message
    assert message.content_type == "application/json"
    assert message.headers["compression"] == "application/x-gzip"


def test_unknown_serializer_is_refused() -> None:
    with pytest.raises(ConfigError, match="bson"):
        _prepare(serializer="bson")


def test_routing_options() -> None:
    call = _prepare(task_queue="emails")
    assert (call.message.exchange, call.message.routing_key) == ("", "emails")
    assert call.route.queue == Queue("emails")
    call = _prepare(task_queue="emails", queue="urgent")
    assert call.message.routing_key == "urgent"
    assert call.route.queue == Queue("urgent")
    call = _prepare(exchange="events", routing_key="user.created")
    assert (call.message.exchange, call.message.routing_key) == ("events", "user.created")
    assert call.route.queue is None
    call = _prepare(routing_key="reports")
    assert (call.message.exchange, call.message.routing_key) == ("", "reports")
    assert call.route.queue == Queue("reports")


def test_queue_and_a_different_routing_key_without_exchange_are_refused() -> None:
    with pytest.raises(ConfigError, match="conflict"):
        _prepare(queue="q", routing_key="other")
    assert _prepare(queue="q", routing_key="q").message.routing_key == "q"
    call = _prepare(queue="q", routing_key="other", exchange="events")
    assert (call.message.exchange, call.message.routing_key) == ("events", "other")


def test_routes_choose_queue_and_priority() -> None:
    settings = _settings(
        routes={"proj.add": {"queue": "math", "priority": 6}, "proj.*": "misc"},
    )
    call = _prepare(settings)
    assert (call.message.routing_key, call.message.priority) == ("math", 6)
    assert call.route == Route("", "math", Queue("math"), 6)
    # The call's (or the task's, passed the same way) priority wins.
    assert _prepare(settings, priority=1).message.priority == 1
    other = _prepare(settings, task_name="proj.sub")
    assert (other.message.routing_key, other.message.priority) == ("misc", None)
    assert other.message.headers["task"] == "proj.sub"


@pytest.mark.parametrize("priority", [256, -1, "high", True])
def test_a_bad_route_priority_is_refused(priority: object) -> None:
    settings = _settings(routes={"proj.*": {"priority": priority}})
    with pytest.raises(ConfigError, match="priority"):
        _prepare(settings)


def test_routes_to_an_exchange() -> None:
    settings = _settings(routes={"proj.*": {"exchange": "events", "routing_key": "user.created"}})
    call = _prepare(settings)
    assert (call.message.exchange, call.message.routing_key) == ("events", "user.created")
    assert call.route.queue is None


def test_a_queue_bound_to_an_exchange_is_published_there() -> None:
    mail = Queue("mail", exchange=Exchange("mail", "topic"), routing_key="mail.#")
    settings = _settings(queues=[mail])
    for call in (_prepare(settings, queue="mail"), _prepare(settings, task_queue="mail")):
        assert (call.message.exchange, call.message.routing_key) == ("mail", "mail.#")
        assert call.route.queue is mail


def test_default_exchange_binds_implicit_queues() -> None:
    call = _prepare(_settings(default_exchange="tasks"), task_queue="emails")
    assert (call.message.exchange, call.message.routing_key) == ("tasks", "emails")
    assert call.route.queue == Queue("emails", exchange=Exchange("tasks"), routing_key="emails")
    assert call.route.queue.all_bindings()[0].exchange_obj == Exchange("tasks")


def test_extra_headers() -> None:
    assert _prepare(headers={"x-tenant": "acme"}).message.headers["x-tenant"] == "acme"


def test_call_inside_a_task_records_parent_and_root() -> None:
    token = current_request.set(Request(id="parent-id", task="proj.outer", root_id="root-id"))
    try:
        headers = _prepare().message.headers
    finally:
        current_request.reset(token)
    assert headers["parent_id"] == "parent-id"
    assert headers["root_id"] == "root-id"


def test_call_inside_a_root_task_uses_it_as_root() -> None:
    token = current_request.set(Request(id="first", task="proj.outer"))
    try:
        headers = _prepare().message.headers
    finally:
        current_request.reset(token)
    assert (headers["parent_id"], headers["root_id"]) == ("first", "first")


# -- time limits (issue #5) ------------------------------------------------------------------


def test_time_limits_travel_in_celerys_timelimit_header_hard_first() -> None:
    headers = _prepare(time_limit=30, soft_time_limit=10.5).message.headers
    assert headers["timelimit"] == [30, 10.5]
    assert _prepare(time_limit=5).message.headers["timelimit"] == [5, None]
    assert _prepare().message.headers["timelimit"] == [None, None]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"time_limit": 0}, "time_limit must be"),
        ({"soft_time_limit": -1}, "soft_time_limit must be"),
        ({"time_limit": 5, "soft_time_limit": 5}, "must be below time_limit"),
    ],
)
def test_bad_time_limits_of_a_call_are_refused(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _prepare(**options)


def test_prepare_call_passes_a_workflow_embed_through() -> None:
    callback = {"task": "proj.notify", "args": [], "kwargs": {}, "options": {}}
    call = _prepare(embed={"callbacks": [callback]})
    assert json.loads(call.message.body)[2]["callbacks"] == [callback]
    assert json.loads(_prepare().message.body)[2]["callbacks"] is None
