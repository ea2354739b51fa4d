"""Broker-held delays: levels, routing keys, names, and the wiring proven on a simulated broker.

The simulated broker below does what RabbitMQ does with the declarations that
:mod:`amqptasks.topology.delays` produces: topic/direct/fanout routing,
exchange-to-exchange bindings, per-queue TTL with expiry at the queue head,
dead-lettering to ``x-dead-letter-exchange`` (with ``x-dead-letter-routing-key``
or else the message's own routing key), ``x-death`` bookkeeping and the
documented dead-letter cycle rule (https://www.rabbitmq.com/docs/dlx,
https://www.rabbitmq.com/docs/ttl). No broker is needed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import heapq
import itertools
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from amqptasks._client import destinations, wire_message
from amqptasks.config import Settings
from amqptasks.exceptions import ConfigError
from amqptasks.publishing import DEAD_LETTER_HEADERS, delayed_message, prepare_call
from amqptasks.routing import Router
from amqptasks.topology import delays, names
from amqptasks.topology.model import Declarations, Exchange, Queue

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

PREFIX = names.DELAY_PREFIX
URL = "amqp://guest:guest@127.0.0.1:1//"


# --------------------------------------------------------------------------- delay_seconds


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (0.1, 1),
        (0.5, 1),
        (1, 1),
        (1.0, 1),
        (1.01, 2),
        (1.999, 2),
        (2, 2),
        (59.0000001, 60),
        (7200, 7200),
        (delays.MAX_DELAY, delays.MAX_DELAY),
        (float(delays.MAX_DELAY), delays.MAX_DELAY),
    ],
)
def test_delay_seconds_rounds_up_to_whole_seconds(given: float, expected: int) -> None:
    result = delays.delay_seconds(given)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("given", [0, 0.0, -0.0, -0.1, -1, -1e9, -math.inf])
def test_delay_seconds_is_zero_when_not_positive(given: float) -> None:
    assert delays.delay_seconds(given) == 0


@pytest.mark.parametrize(
    "given",
    [
        math.nan,
        math.inf,
        True,
        False,
        "5",
        None,
        delays.MAX_DELAY + 1,
        delays.MAX_DELAY + 0.5,
        1e300,
    ],
)
def test_delay_seconds_rejects_non_numbers_and_too_long(given: Any) -> None:
    with pytest.raises(ConfigError):
        delays.delay_seconds(given)


def test_delay_seconds_rejects_a_huge_integer_with_config_error() -> None:
    # An int too large for a float must be "too long" (ConfigError), not OverflowError.
    with pytest.raises(ConfigError):
        delays.delay_seconds(10**400)


def test_max_delay_covers_years_with_levels() -> None:
    assert delays.MAX_DELAY == 2**delays.LEVELS - 1
    assert delays.MAX_DELAY > 8 * 365 * 24 * 3600


# --------------------------------------------------------------------------- entry_level


@pytest.mark.parametrize(
    ("seconds", "level"),
    [
        (1, 0),
        (2, 1),
        (3, 1),
        (4, 2),
        (5, 2),
        (7, 2),
        (8, 3),
        (60, 5),
        (7200, 12),
        (2**27, 27),
        (2**27 + 1, 27),
        (delays.MAX_DELAY, 27),
    ],
)
def test_entry_level_is_the_highest_set_bit(seconds: int, level: int) -> None:
    assert delays.entry_level(seconds) == level
    assert 2**level <= seconds < 2 ** (level + 1)


@pytest.mark.parametrize("seconds", [0, -1])
def test_entry_level_needs_a_positive_delay(seconds: int) -> None:
    with pytest.raises(ValueError):
        delays.entry_level(seconds)


# --------------------------------------------------------------------------- routing_key


@pytest.mark.parametrize("seconds", [1, 2, 3, 5, 60, 7200, 2**27 + 1, delays.MAX_DELAY])
def test_routing_key_spells_the_delay_then_the_destination(seconds: int) -> None:
    key = delays.routing_key(seconds, "tasks", "proj.add")
    words = key.split(".")
    assert len(words) == delays.LEVELS + 1
    bits, destination = words[:-1], words[-1]
    assert set(bits) <= {"0", "1"}
    assert int("".join(bits), 2) == seconds  # most significant first
    assert destination == names.delay_destination_word("tasks", "proj.add")
    assert len(key.encode()) <= 255


def test_routing_key_bits_most_significant_first() -> None:
    words = delays.routing_key(5, "", "q").split(".")
    assert words[: delays.LEVELS] == ["0"] * (delays.LEVELS - 3) + ["1", "0", "1"]


def test_destination_word_is_one_plain_topic_word() -> None:
    for exchange, key in [("", "default"), ("a.b", "*.#"), ("x*", "#"), ("é", "ü.ß")]:
        word = names.delay_destination_word(exchange, key)
        assert word.startswith("d")
        assert not {".", "*", "#"} & set(word)
        assert word.isascii() and word.isalnum()


# --------------------------------------------------------------------------- names


def test_level_and_deliver_names_use_the_prefix() -> None:
    assert names.delay_level("p", 0) == "p.level.00"
    assert names.delay_level("p", 27) == "p.level.27"
    assert names.delay_deliver_exchange("p") == "p.deliver"
    assert Settings.build({"broker_url": URL}, environ={}).delay_prefix == names.DELAY_PREFIX


LONG = [
    ("", "q"),
    ("x" * 255, "k" * 255),
    ("é" * 127, "ü" * 127),
    ("", "€" * 85),
    ("ex", "a.b." + "long" * 70),
]


@pytest.mark.parametrize(("exchange", "key"), LONG)
def test_hop_queue_names_fit_in_255_bytes(exchange: str, key: str) -> None:
    name = names.delay_hop_queue(PREFIX, exchange, key)
    assert len(name.encode()) <= 255
    name.encode().decode()  # whole characters only
    assert name.startswith(f"{PREFIX}.hop.")
    assert name.endswith(names.delay_destination_word(exchange, key))


def test_distinct_destinations_get_distinct_words_and_hop_queues() -> None:
    destinations_ = [
        ("", "default"),
        ("default", ""),
        ("", "a.b"),
        ("a", "b"),
        ("a.b", ""),
        ("a", "b."),
        ("tasks", "proj.add"),
        ("tasks", "proj.mul"),
        ("x", "k" * 300 + "1"),  # same trimmed readable part ...
        ("x", "k" * 300 + "2"),  # ... different destination
        ("é" * 200, "1"),
        ("é" * 200, "2"),
    ]
    words = {names.delay_destination_word(e, k) for e, k in destinations_}
    hops = {names.delay_hop_queue(PREFIX, e, k) for e, k in destinations_}
    assert len(words) == len(destinations_)
    assert len(hops) == len(destinations_)


def test_every_delay_name_fits_for_any_accepted_prefix() -> None:
    # Settings accepts a delay_prefix; every name derived from it must be a valid
    # AMQP name (<= 255 bytes), or Settings must refuse the prefix.
    prefix = "p" * 250
    try:
        settings = Settings.build({"broker_url": URL, "delay_prefix": prefix}, environ={})
    except ConfigError:
        return
    derived = [
        names.delay_level(settings.delay_prefix, 27),
        names.delay_deliver_exchange(settings.delay_prefix),
        names.delay_hop_queue(settings.delay_prefix, "", "default"),
    ]
    too_long = [name for name in derived if len(name.encode()) > 255]
    assert not too_long, f"{len(too_long)} derived names exceed 255 bytes"


# --------------------------------------------------------------------------- declarations


def test_infrastructure_declares_every_level_and_the_deliver_exchange() -> None:
    infra = delays.infrastructure(PREFIX)
    exchanges = {x.name: x.type for x in infra.exchanges}
    assert exchanges == {
        names.delay_deliver_exchange(PREFIX): "topic",
        **{names.delay_level(PREFIX, n): "topic" for n in range(delays.LEVELS)},
    }
    assert all(x.durable for x in infra.exchanges)
    queues = {q.name: q for q in infra.queues}
    assert set(queues) == {names.delay_level(PREFIX, n) for n in range(delays.LEVELS)}
    for n in range(delays.LEVELS):
        queue = queues[names.delay_level(PREFIX, n)]
        assert queue.durable
        assert queue.arguments["x-message-ttl"] == 2**n * 1000
        below = names.delay_level(PREFIX, n - 1) if n else names.delay_deliver_exchange(PREFIX)
        assert queue.arguments["x-dead-letter-exchange"] == below
        # The routing key must survive dead-lettering: no override.
        assert "x-dead-letter-routing-key" not in queue.arguments
        assert "x-queue-type" not in queue.arguments
    assert len(infra.bindings) == delays.LEVELS
    assert len(infra.exchange_bindings) == delays.LEVELS


def test_quorum_delay_queues_use_at_least_once_dead_lettering() -> None:
    infra = delays.infrastructure("p", "quorum")
    assert len(infra.queues) == delays.LEVELS
    for queue in infra.queues:
        assert queue.arguments["x-queue-type"] == "quorum"
        assert queue.arguments["x-dead-letter-strategy"] == "at-least-once"
        assert queue.arguments["x-overflow"] == "reject-publish"
        assert queue.name.startswith("p.level.")


def test_hop_dead_letters_to_the_destination_at_once() -> None:
    hop = delays.hop(PREFIX, "tasks", "proj.add")
    (queue,) = hop.queues
    assert queue.name == names.delay_hop_queue(PREFIX, "tasks", "proj.add")
    assert queue.arguments == {
        "x-message-ttl": 0,
        "x-dead-letter-exchange": "tasks",
        "x-dead-letter-routing-key": "proj.add",
    }
    (binding,) = hop.bindings
    assert binding.exchange == names.delay_deliver_exchange(PREFIX)
    assert binding.queue == queue.name
    assert not hop.exchanges  # the destination exchange is the app's business


# --------------------------------------------------------------------------- simulated broker


def topic_matches(pattern: str, key: str) -> bool:
    """RabbitMQ topic matching: ``*`` is exactly one word, ``#`` zero or more."""
    pat, words = pattern.split("."), key.split(".")

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(pat):
            return j == len(words)
        if pat[i] == "#":
            return match(i + 1, j) or (j < len(words) and match(i, j + 1))
        if j == len(words):
            return False
        return pat[i] in ("*", words[j]) and match(i + 1, j + 1)

    return match(0, 0)


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.*", "a", False),
        ("a.#", "a", True),
        ("a.#", "a.b.c", True),
        ("#", "x.y", True),
        ("*.b.#", "a.b", True),
        ("*.b.#", "b", False),
        ("#.c", "a.b.c", True),
        ("#.c", "a.b.d", False),
        ("*", "a.b", False),
        ("1.*", "0.x", False),
    ],
)
def test_simulated_topic_matching(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


class Lost(AssertionError):
    """The simulated broker dropped a message (unroutable dead letter, or a cycle)."""


@dataclass
class Arrival:
    """Where a message came to rest outside the delay stack."""

    queues: tuple[str, ...]
    exchange: str
    routing_key: str
    waited_ms: int
    path: list[str]
    headers: dict[str, Any]


@dataclass
class Broker:
    """Just enough of RabbitMQ to route, expire and dead-letter messages."""

    exchanges: dict[str, str] = field(default_factory=dict)
    queues: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    queue_bindings: list[tuple[str, str, str]] = field(default_factory=list)
    exchange_bindings: list[tuple[str, str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, *declarations: Declarations) -> Broker:
        broker = cls()
        for declared in declarations:
            for exchange in declared.exchanges:
                known = broker.exchanges.setdefault(exchange.name, exchange.type)
                assert known == exchange.type, f"406: exchange {exchange.name} redeclared"
            for queue in declared.queues:
                known_args = broker.queues.setdefault(queue.name, dict(queue.arguments))
                assert known_args == dict(queue.arguments), f"406: queue {queue.name} redeclared"
            for binding in declared.bindings:
                assert binding.queue in broker.queues, f"404: queue {binding.queue}"
                assert binding.exchange in broker.exchanges, f"404: exchange {binding.exchange}"
                row = (binding.exchange, binding.routing_key, binding.queue)
                if row not in broker.queue_bindings:
                    broker.queue_bindings.append(row)
            for link in declared.exchange_bindings:
                assert link.source in broker.exchanges, f"404: exchange {link.source}"
                assert link.destination in broker.exchanges, f"404: exchange {link.destination}"
                row = (link.source, link.routing_key, link.destination)
                if row not in broker.exchange_bindings:
                    broker.exchange_bindings.append(row)
        return broker

    def _matches(self, exchange: str, pattern: str, key: str) -> bool:
        kind = self.exchanges[exchange]
        if kind == "topic":
            return topic_matches(pattern, key)
        if kind == "direct":
            return pattern == key
        if kind == "fanout":
            return True
        raise AssertionError(f"simulated broker has no {kind} exchanges")

    def route(self, exchange: str, key: str) -> list[str]:
        """Queues that a message published to ``exchange`` with ``key`` reaches.

        Every path counts (RabbitMQ would deliver one copy per queue): the
        delay wiring must never reach a queue twice, so callers can tell.
        """
        if exchange == "":
            return [key] if key in self.queues else []
        if exchange not in self.exchanges:
            raise Lost(f"404: no exchange {exchange!r}")
        reached: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            for source, pattern, queue in self.queue_bindings:
                if source == name and self._matches(name, pattern, key):
                    reached.append(queue)
            for source, pattern, target in self.exchange_bindings:
                if source == name and self._matches(name, pattern, key):
                    visit(target)

        visit(exchange)
        return reached

    def is_delay_queue(self, queue: str) -> bool:
        return "x-message-ttl" in self.queues[queue]

    def dead_letter(
        self, queue: str, exchange: str, key: str, headers: dict[str, Any], reason: str
    ) -> tuple[str, str, list[str]]:
        """Dead-letter a message from ``queue``: update ``x-death``, route, drop cycles."""
        args = self.queues[queue]
        deaths: list[dict[str, Any]] = list(headers.get("x-death") or [])
        entry = next((d for d in deaths if d["queue"] == queue and d["reason"] == reason), None)
        if entry is None:
            entry = {
                "queue": queue,
                "reason": reason,
                "count": 0,
                "exchange": exchange,
                "routing-keys": [key],
            }
        else:
            deaths.remove(entry)
            entry = {**entry}
        entry["count"] += 1
        deaths.insert(0, entry)  # newest first
        headers["x-death"] = deaths
        headers.setdefault("x-first-death-queue", queue)
        headers.setdefault("x-first-death-reason", reason)
        headers.setdefault("x-first-death-exchange", exchange)
        headers["x-last-death-queue"] = queue
        headers["x-last-death-reason"] = reason
        headers["x-last-death-exchange"] = exchange
        target = args["x-dead-letter-exchange"]
        new_key = args.get("x-dead-letter-routing-key", key)
        reached = self.route(target, new_key)
        if reason != "rejected":
            reached = [q for q in reached if not _is_cycle(q, deaths)]
        return target, new_key, reached


def _is_cycle(queue: str, deaths: list[dict[str, Any]]) -> bool:
    """RabbitMQ's rule: back at a queue it already left, with no rejection in between."""
    for index, death in enumerate(deaths):
        if death["queue"] == queue:
            return all(d["reason"] != "rejected" for d in deaths[: index + 1])
    return False


def walk(
    broker: Broker, exchange: str, key: str, headers: Mapping[str, Any] | None = None
) -> Arrival:
    """Publish one message and follow it until it rests in a queue without TTL."""
    headers = dict(headers or {})
    reached = broker.route(exchange, key)
    waited_ms = 0
    path: list[str] = []
    for _ in range(4 * delays.LEVELS):
        if not reached:
            raise Lost(f"dropped after {path} (exchange {exchange!r}, key {key!r})")
        if not any(broker.is_delay_queue(q) for q in reached):
            return Arrival(tuple(reached), exchange, key, waited_ms, path, headers)
        assert len(reached) == 1, f"in {reached} at once (after {path})"
        (queue,) = reached
        path.append(queue)
        waited_ms += broker.queues[queue]["x-message-ttl"]
        exchange, key, reached = broker.dead_letter(queue, exchange, key, headers, "expired")
    raise AssertionError(f"no end in sight: {path}")


# Destinations of every kind, and the declarations an app would make for them.
DESTINATION_QUEUES = (
    Queue("default"),
    Queue("proj", exchange=Exchange("tasks", "topic"), routing_key="proj.*"),
    Queue("direct-q", exchange=Exchange("direct-x", "direct"), routing_key="k"),
    Queue("quorum-q", queue_type="quorum"),
    Queue("fan-q", exchange=Exchange("fan-x", "fanout")),
)
DESTINATIONS: list[tuple[str, str, tuple[str, ...]]] = [
    ("", "default", ("default",)),
    ("tasks", "proj.add", ("proj",)),
    ("direct-x", "k", ("direct-q",)),
    ("", "quorum-q", ("quorum-q",)),
    ("fan-x", "anything", ("fan-q",)),
]


def _stack(prefix: str = PREFIX, queue_type: str = "classic") -> Broker:
    app_declarations = [q.declarations("classic") for q in DESTINATION_QUEUES]
    hops = [delays.hop(prefix, exchange, key) for exchange, key, _ in DESTINATIONS]
    return Broker.of(*app_declarations, delays.infrastructure(prefix, queue_type), *hops)


def _delayed(seconds: int, exchange: str, key: str, prefix: str = PREFIX) -> tuple[str, str]:
    return names.delay_level(prefix, delays.entry_level(seconds)), delays.routing_key(
        seconds, exchange, key
    )


_rng = random.Random(20240607)
DELAYS = sorted(
    {1, 2, 3, 4, 5, 7, 8, 60, 61, 3599, 7200, 86400, 2**27, 2**27 + 1, delays.MAX_DELAY}
    | {_rng.randint(1, 1000) for _ in range(20)}
    | {_rng.randint(1, delays.MAX_DELAY) for _ in range(20)}
)


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
@pytest.mark.parametrize("seconds", DELAYS)
def test_a_delayed_message_waits_exactly_its_delay_and_reaches_its_destination(
    seconds: int, queue_type: str
) -> None:
    broker = _stack(queue_type=queue_type)
    for exchange, key, queues in DESTINATIONS:
        entry, delayed_key = _delayed(seconds, exchange, key)
        arrival = walk(broker, entry, delayed_key)
        assert arrival.waited_ms == seconds * 1000
        assert (arrival.exchange, arrival.routing_key) == (exchange, key)
        assert arrival.queues == queues
        # The same queues as an immediate publish would reach.
        assert tuple(broker.route(exchange, key)) == queues
        # One level queue per set bit, highest first, then the destination's hop.
        levels = [n for n in reversed(range(delays.LEVELS)) if seconds >> n & 1]
        assert arrival.path == [
            *(names.delay_level(PREFIX, n) for n in levels),
            names.delay_hop_queue(PREFIX, exchange, key),
        ]


def test_every_delay_up_to_a_thousand_seconds() -> None:
    broker = _stack()
    for seconds in range(1, 1001):
        entry, delayed_key = _delayed(seconds, "tasks", "proj.add")
        arrival = walk(broker, entry, delayed_key)
        assert arrival.waited_ms == seconds * 1000
        assert arrival.queues == ("proj",)


def test_a_custom_prefix_builds_a_separate_working_stack() -> None:
    broker = Broker.of(
        Queue("default").declarations("classic"),
        delays.infrastructure("other"),
        delays.hop("other", "", "default"),
    )
    entry, delayed_key = _delayed(37, "", "default", prefix="other")
    assert entry == "other.level.05"
    arrival = walk(broker, entry, delayed_key)
    assert (arrival.waited_ms, arrival.queues) == (37_000, ("default",))


def test_a_message_without_its_hop_is_lost() -> None:
    # Control: the simulation does notice a broken wiring.
    broker = Broker.of(Queue("default").declarations("classic"), delays.infrastructure(PREFIX))
    entry, delayed_key = _delayed(3, "", "default")
    with pytest.raises(Lost):
        walk(broker, entry, delayed_key)


def test_delaying_the_same_message_again_is_not_dropped_as_a_cycle() -> None:
    """A retried task goes through the same levels again: x-death must be cleared."""
    broker = _stack()
    message = _prepared(countdown=5)
    first = walk(broker, *_address(wire_message(message, _settings())))
    assert first.queues == ("default",)
    assert first.headers["x-death"]  # the broker recorded the expiries
    # The worker republishes the delivered message, delayed again.
    again = dataclasses.replace(
        message.message, headers={**message.message.headers, **first.headers}
    )
    redelayed = delayed_message(again, 5, PREFIX)
    assert not DEAD_LETTER_HEADERS & set(redelayed.headers)
    second = walk(broker, redelayed.exchange, redelayed.routing_key, redelayed.headers)
    assert (second.waited_ms, second.queues) == (5000, ("default",))
    # Control: with the broker's headers kept, RabbitMQ would drop it as a cycle.
    with pytest.raises(Lost):
        walk(broker, redelayed.exchange, redelayed.routing_key, first.headers)


# --------------------------------------------------------------------------- many at once


def run_concurrently(
    broker: Broker, published: Iterable[tuple[int, str, str, str]]
) -> dict[str, tuple[int, tuple[str, ...]]]:
    """Publish ``(at_ms, exchange, key, id)`` messages; return ``id -> (arrival_ms, queues)``.

    Queues are FIFO and expire messages at their head only (classic queues do),
    so a message that could expire behind a longer-lived one would be late.
    """
    held: dict[str, deque[tuple[int, str, str, str, dict[str, Any]]]] = {
        name: deque() for name in broker.queues if broker.is_delay_queue(name)
    }
    events: list[tuple[int, int, str, Any]] = []
    order = itertools.count()
    arrivals: dict[str, tuple[int, tuple[str, ...]]] = {}

    def enter(
        now: int, reached: list[str], exchange: str, key: str, ident: str, headers: dict[str, Any]
    ) -> None:
        if not reached:
            raise Lost(f"{ident} dropped at {now} ms")
        if not any(broker.is_delay_queue(q) for q in reached):
            arrivals[ident] = (now, tuple(reached))
            return
        assert len(reached) == 1, f"{ident} in {reached} at once"
        (queue,) = reached
        held[queue].append((now, exchange, key, ident, headers))
        heapq.heappush(
            events, (now + broker.queues[queue]["x-message-ttl"], next(order), "expire", queue)
        )

    for at, exchange, key, ident in published:
        heapq.heappush(events, (at, next(order), "publish", (exchange, key, ident)))
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == "publish":
            exchange, key, ident = payload
            enter(now, broker.route(exchange, key), exchange, key, ident, {})
            continue
        queue = payload
        ttl = broker.queues[queue]["x-message-ttl"]
        while held[queue] and held[queue][0][0] + ttl <= now:
            _, exchange, key, ident, headers = held[queue].popleft()
            target, new_key, reached = broker.dead_letter(queue, exchange, key, headers, "expired")
            enter(now, reached, target, new_key, ident, headers)
    return arrivals


def test_many_messages_at_once_each_arrive_on_time() -> None:
    rng = random.Random(7)
    broker = _stack()
    expected: dict[str, tuple[int, tuple[str, ...]]] = {}
    published = []
    for n in range(600):
        at = rng.randint(0, 20_000)  # ms
        seconds = rng.choice([rng.randint(1, 40), rng.randint(1, 5000), rng.randint(1, 2**20)])
        exchange, key, queues = rng.choice(DESTINATIONS)
        entry, delayed_key = _delayed(seconds, exchange, key)
        ident = f"m{n}"
        published.append((at, entry, delayed_key, ident))
        expected[ident] = (at + seconds * 1000, queues)
    assert run_concurrently(broker, published) == expected


# --------------------------------------------------------------------------- from a task call


def _settings(**given: Any) -> Settings:
    return Settings.build({"broker_url": URL, "queues": DESTINATION_QUEUES, **given}, environ={})


def _router(settings: Settings) -> Router:
    return Router(
        queues=settings.queues,
        routes=settings.routes,
        default_queue=settings.default_queue,
        default_exchange=settings.default_exchange,
        default_queue_type=settings.default_queue_type,
    )


NOW = dt.datetime(2024, 1, 2, 3, 4, 5, 250_000, tzinfo=dt.timezone.utc)


def _prepared(settings: Settings | None = None, **options: Any) -> Any:
    settings = settings or _settings()
    return prepare_call(
        settings=settings,
        router=_router(settings),
        task_name="proj.add",
        args=(1, 2),
        kwargs=None,
        reply_to=None,
        now=NOW,
        **options,
    )


def _address(message: Any) -> tuple[str, str, dict[str, Any]]:
    return message.exchange, message.routing_key, dict(message.headers)


@pytest.mark.parametrize("delay_queue_type", ["classic", "quorum"])
@pytest.mark.parametrize(
    ("options", "queue", "seconds"),
    [
        ({"countdown": 0.2}, "default", 1),
        ({"countdown": 90}, "default", 90),
        ({"countdown": 7200, "queue": "proj"}, "proj", 7200),
        ({"countdown": 3.5, "queue": "direct-q"}, "direct-q", 4),
        ({"countdown": 12, "queue": "quorum-q"}, "quorum-q", 12),
        ({"eta": NOW + dt.timedelta(hours=2), "queue": "fan-q"}, "fan-q", 7200),
        ({"eta": NOW + dt.timedelta(seconds=9.9)}, "default", 10),
    ],
)
def test_a_delayed_call_declares_and_reaches_its_queue(
    options: dict[str, Any], queue: str, seconds: int, delay_queue_type: str
) -> None:
    settings = _settings(delay_queue_type=delay_queue_type, delay_prefix="app.delay")
    call = _prepared(settings, **options)
    assert call.delay == seconds
    declared = destinations(_router(settings), settings, call)
    broker = Broker.of(*(target.declarations for target in declared))
    wire = wire_message(call, settings)
    assert wire.exchange.startswith("app.delay.level.")
    arrival = walk(broker, wire.exchange, wire.routing_key, wire.headers)
    assert arrival.waited_ms == seconds * 1000
    assert arrival.queues == (queue,)
    assert (arrival.exchange, arrival.routing_key) == (
        call.message.exchange,
        call.message.routing_key,
    )
