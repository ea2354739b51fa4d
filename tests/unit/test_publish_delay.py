"""countdown= and eta= on a task call, and how a delayed call goes on the wire (pure)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import pytest

from amqptasks._client import destination, destinations, wire_message
from amqptasks.config import Settings
from amqptasks.exceptions import ConfigError
from amqptasks.publishing import DEAD_LETTER_HEADERS, PreparedCall, delayed_message, prepare_call
from amqptasks.routing import Router
from amqptasks.topology import delays, names
from amqptasks.topology.model import Exchange, Queue

URL = "amqp://guest:guest@127.0.0.1:1//"
UTC = dt.timezone.utc
NOW = dt.datetime(2024, 3, 10, 12, 0, 0, 400_000, tzinfo=UTC)


def _settings(**given: Any) -> Settings:
    return Settings.build({"broker_url": URL, **given}, environ={})


def _router(settings: Settings) -> Router:
    return Router(
        queues=settings.queues,
        routes=settings.routes,
        default_queue=settings.default_queue,
        default_exchange=settings.default_exchange,
        default_queue_type=settings.default_queue_type,
    )


def _prepare(settings: Settings | None = None, **options: Any) -> PreparedCall:
    settings = settings or _settings()
    options.setdefault("now", NOW)
    return prepare_call(
        settings=settings,
        router=_router(settings),
        task_name="proj.add",
        args=(1, 2),
        kwargs=None,
        reply_to="amqptasks.reply.t.abc",
        **options,
    )


# --------------------------------------------------------------------------- countdown / eta


def test_no_countdown_no_eta_no_delay() -> None:
    call = _prepare()
    assert call.delay == 0
    assert call.message.headers["eta"] is None


@pytest.mark.parametrize(
    ("countdown", "eta", "delay"),
    [
        (10, "2024-03-10T12:00:10.400000+00:00", 10),
        (10.0, "2024-03-10T12:00:10.400000+00:00", 10),
        (0.1, "2024-03-10T12:00:00.500000+00:00", 1),
        (1.01, "2024-03-10T12:00:01.410000+00:00", 2),
        (7200, "2024-03-10T14:00:00.400000+00:00", 7200),
    ],
)
def test_countdown_sets_an_iso_utc_eta_and_a_rounded_up_delay(
    countdown: float, eta: str, delay: int
) -> None:
    call = _prepare(countdown=countdown)
    assert call.message.headers["eta"] == eta
    assert call.delay == delay
    # The message itself still names its real destination.
    assert (call.message.exchange, call.message.routing_key) == ("", "default")


@pytest.mark.parametrize("countdown", [0, -1, -3600])
def test_countdown_not_positive_is_not_delayed(countdown: float) -> None:
    call = _prepare(countdown=countdown)
    assert call.delay == 0
    assert call.message.headers["eta"] == (NOW + dt.timedelta(seconds=countdown)).isoformat()


def test_aware_eta_is_converted_to_utc() -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    eta = dt.datetime(2024, 3, 10, 14, 1, 0, tzinfo=plus2)  # 12:01:00 UTC
    call = _prepare(eta=eta)
    assert call.message.headers["eta"] == "2024-03-10T12:01:00+00:00"
    assert call.delay == 60  # 59.6 s rounded up


def test_naive_eta_is_utc() -> None:
    call = _prepare(eta=dt.datetime(2024, 3, 10, 13, 0, 0))
    assert call.message.headers["eta"] == "2024-03-10T13:00:00+00:00"
    assert call.delay == 3600  # 3599.6 s rounded up


def test_eta_in_the_past_is_not_delayed() -> None:
    call = _prepare(eta=NOW - dt.timedelta(days=1))
    assert call.delay == 0
    assert call.message.headers["eta"] == (NOW - dt.timedelta(days=1)).isoformat()


def test_eta_exactly_now_is_not_delayed() -> None:
    assert _prepare(eta=NOW).delay == 0


def test_countdown_and_eta_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="countdown"):
        _prepare(countdown=5, eta=NOW)


@pytest.mark.parametrize("eta", [5, 5.0, "2024-03-10T12:00:00", dt.date(2024, 3, 11), True])
def test_eta_must_be_a_datetime(eta: Any) -> None:
    with pytest.raises(ConfigError, match="eta"):
        _prepare(eta=eta)


@pytest.mark.parametrize("countdown", ["5", True, [5], dt.timedelta(seconds=5)])
def test_countdown_must_be_a_number(countdown: Any) -> None:
    with pytest.raises(ConfigError):
        _prepare(countdown=countdown)


@pytest.mark.parametrize(
    "countdown", [math.nan, math.inf, delays.MAX_DELAY + 1, 1e12, 1e300], ids=str
)
def test_an_impossible_countdown_is_a_config_error(countdown: float) -> None:
    # Not ValueError/OverflowError from datetime arithmetic.
    with pytest.raises(ConfigError):
        _prepare(countdown=countdown)


def test_an_eta_beyond_the_longest_delay_is_refused() -> None:
    with pytest.raises(ConfigError, match="longest"):
        _prepare(eta=NOW + dt.timedelta(seconds=delays.MAX_DELAY + 1))
    assert _prepare(eta=NOW + dt.timedelta(seconds=delays.MAX_DELAY)).delay == delays.MAX_DELAY


def test_without_now_the_clock_is_used() -> None:
    before = dt.datetime.now(UTC)
    call = prepare_call(
        settings=_settings(),
        router=_router(_settings()),
        task_name="t",
        args=None,
        kwargs=None,
        reply_to=None,
        countdown=30,
    )
    after = dt.datetime.now(UTC)
    eta = dt.datetime.fromisoformat(call.message.headers["eta"])
    assert before + dt.timedelta(seconds=30) <= eta <= after + dt.timedelta(seconds=30)
    assert call.delay in (30, 31)


def test_expires_is_relative_to_the_same_now() -> None:
    call = _prepare(countdown=10, expires=60)
    assert call.message.headers["expires"] == (NOW + dt.timedelta(seconds=60)).isoformat()


def test_retries_header() -> None:
    assert _prepare().message.headers["retries"] == 0
    assert _prepare(retries=4).message.headers["retries"] == 4


# --------------------------------------------------------------------------- delayed_message


def _with_death_headers(call: PreparedCall) -> PreparedCall:
    headers = {
        **call.message.headers,
        "x-death": [{"queue": "q", "reason": "expired", "count": 1}],
        "x-first-death-exchange": "",
        "x-first-death-queue": "q",
        "x-first-death-reason": "expired",
        "x-last-death-exchange": "",
        "x-last-death-queue": "q",
        "x-last-death-reason": "expired",
        "x-amqptasks-deliveries": 2,
        "custom": "kept",
    }
    return dataclasses.replace(call, message=dataclasses.replace(call.message, headers=headers))


def test_delayed_message_is_addressed_to_the_entry_level() -> None:
    call = _prepare(countdown=5)
    original = call.message
    delayed = delayed_message(original, 5, "pfx")
    assert delayed.exchange == "pfx.level.02"
    assert delayed.routing_key == delays.routing_key(5, "", "default")
    assert delayed.body == original.body
    assert delayed.message_id == original.message_id
    assert delayed.correlation_id == original.correlation_id
    assert delayed.reply_to == original.reply_to
    assert delayed.content_type == original.content_type
    assert delayed.delivery_mode == original.delivery_mode
    assert delayed.headers == original.headers
    # The original is untouched.
    assert (original.exchange, original.routing_key) == ("", "default")


def test_delayed_message_drops_the_brokers_dead_letter_headers() -> None:
    original = _with_death_headers(_prepare(countdown=5)).message
    delayed = delayed_message(original, 5, "pfx")
    assert not DEAD_LETTER_HEADERS & set(delayed.headers)
    assert delayed.headers["custom"] == "kept"
    assert delayed.headers["x-amqptasks-deliveries"] == 2
    assert delayed.headers["id"] == original.headers["id"]
    assert "x-death" in original.headers  # not mutated


def test_dead_letter_headers_are_rabbitmqs() -> None:
    assert {
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    } <= DEAD_LETTER_HEADERS


# --------------------------------------------------------------------------- destinations / wire


def test_wire_message_of_an_undelayed_call_is_the_message_itself() -> None:
    call = _prepare()
    assert wire_message(call, _settings()) is call.message


def test_wire_message_of_a_delayed_call_goes_to_the_delay_levels() -> None:
    settings = _settings(delay_prefix="my.delays")
    call = _prepare(settings, countdown=70)
    wire = wire_message(call, settings)
    assert wire == delayed_message(call.message, 70, "my.delays")
    assert wire.exchange == names.delay_level("my.delays", 6)


def test_destinations_of_an_undelayed_call_are_its_route_only() -> None:
    settings = _settings()
    call = _prepare(settings)
    assert destinations(_router(settings), settings, call) == [
        destination(_router(settings), settings, call.route)
    ]


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_destinations_of_a_delayed_call_add_the_levels_and_the_hop(queue_type: str) -> None:
    settings = _settings(
        delay_prefix="my.delays",
        delay_queue_type=queue_type,
        queues=(Queue("proj", exchange=Exchange("tasks", "topic"), routing_key="proj.add"),),
        topology_mode="passive",
    )
    router = _router(settings)
    call = _prepare(settings, countdown=3, queue="proj")
    found = destinations(router, settings, call)
    assert len(found) == 3
    route, levels, hop = found
    assert route == destination(router, settings, call.route)
    assert levels.declarations == delays.infrastructure("my.delays", queue_type)
    assert hop.declarations == delays.hop("my.delays", "tasks", "proj.add")
    assert levels.mode == hop.mode == "passive"
    # Keys tell destinations apart, and the levels are shared by every call.
    other = _prepare(settings, countdown=9)
    other_found = destinations(router, settings, other)
    assert other_found[1].key == levels.key
    assert other_found[2].key != hop.key
    assert len({d.key for d in [*found, *other_found]}) == 5


def test_a_call_to_an_undeclared_queue_through_the_default_exchange_still_gets_its_hop() -> None:
    settings = _settings()
    call = _prepare(settings, countdown=3, queue="elsewhere")
    found = destinations(_router(settings), settings, call)
    hop = found[-1].declarations
    assert hop == delays.hop(settings.delay_prefix, call.message.exchange, call.message.routing_key)
