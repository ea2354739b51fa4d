"""Exchange, Binding and Queue: validation, x-arguments and declarations (pure)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from amqptasks.exceptions import ConfigError
from amqptasks.topology.model import (
    MAX_NAME_BYTES,
    Binding,
    BindingDeclaration,
    Declarations,
    Exchange,
    Queue,
    QueueDeclaration,
    dead_letter_declaration,
    reply_queue,
)

DLX = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "q.dlq"}


# -- validation: every error names the field -----------------------------------------------


def test_queue_name_must_not_be_empty() -> None:
    with pytest.raises(ConfigError, match="Queue name must not be empty"):
        Queue("")


def test_queue_name_must_be_a_string() -> None:
    with pytest.raises(ConfigError, match="Queue name must be a string"):
        Queue(5)  # type: ignore[arg-type]


def test_queue_name_of_255_bytes_is_accepted() -> None:
    assert Queue("a" * MAX_NAME_BYTES, dead_letter=False).name == "a" * 255


@pytest.mark.parametrize("name", ["a" * 256, "é" * 128])  # 128 characters, 256 bytes
def test_queue_name_longer_than_255_bytes_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=r"Queue name .* longer than 255 bytes"):
        Queue(name)


def test_queue_names_starting_with_amq_are_reserved() -> None:
    with pytest.raises(ConfigError, match=r"Queue 'amq\.work'.*'amq\.' are reserved"):
        Queue("amq.work")
    assert Queue("xamq.work").name == "xamq.work"


def test_dead_letter_queue_name_longer_than_255_bytes_is_refused() -> None:
    with pytest.raises(ConfigError, match="dead"):
        Queue("a" * 252)


@pytest.mark.parametrize("value", [0, 256, -1, True, False, 2.0, "5"])
def test_max_priority_must_be_1_to_255(value: object) -> None:
    with pytest.raises(ConfigError, match=r"Queue 'q': max_priority must be 1-255"):
        Queue("q", max_priority=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1, 10, 255])
def test_max_priority_in_range(value: int) -> None:
    assert Queue("q", max_priority=value).queue_arguments()["x-max-priority"] == value


def test_max_priority_is_refused_for_quorum_queues() -> None:
    with pytest.raises(ConfigError, match="quorum queues do not take max_priority"):
        Queue("q", max_priority=5, queue_type="quorum")


def test_max_priority_is_refused_when_the_app_default_is_quorum() -> None:
    queue = Queue("q", max_priority=5)
    with pytest.raises(ConfigError, match=r"Queue 'q': quorum queues do not take max_priority"):
        queue.declaration("quorum")
    with pytest.raises(ConfigError, match="max_priority"):
        queue.declarations("quorum")


@pytest.mark.parametrize("attr", ["message_ttl", "expires"])
@pytest.mark.parametrize("value", [0, -1, -0.5, math.nan, math.inf, -math.inf])
def test_durations_must_be_positive_and_finite(attr: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"Queue 'q' {attr} \(seconds\) must be > 0"):
        Queue("q", **{attr: value})


@pytest.mark.parametrize("attr", ["message_ttl", "expires"])
@pytest.mark.parametrize("value", ["60", True, [60]])
def test_durations_must_be_numbers(attr: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"Queue 'q' {attr} \(seconds\) must be a number"):
        Queue("q", **{attr: value})


@pytest.mark.parametrize("attr", ["max_length", "delivery_limit"])
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (1.5, "must be a whole number"),
        (2.0, "must be a whole number"),
        ("3", "must be a number"),
        (True, "must be a number"),
        (0, "must be > 0"),
        (-3, "must be > 0"),
    ],
)
def test_counts_must_be_positive_integers(attr: str, value: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"Queue 'q' {attr} {problem}"):
        Queue("q", **{attr: value})


def test_delivery_limit_needs_a_quorum_queue() -> None:
    with pytest.raises(ConfigError, match="delivery_limit needs queue_type='quorum'"):
        Queue("q", delivery_limit=3, queue_type="classic")
    assert Queue("q", delivery_limit=3, queue_type="quorum").delivery_limit == 3


def test_delivery_limit_is_refused_when_the_app_default_is_classic() -> None:
    queue = Queue("q", delivery_limit=3)
    assert queue.declaration("quorum").arguments["x-delivery-limit"] == 3
    with pytest.raises(ConfigError, match="delivery_limit"):
        queue.declaration("classic")


def test_quorum_queues_get_the_default_delivery_limit_the_app_passes() -> None:
    # The app passes worker_max_deliveries: never RabbitMQ 4's silent 20.
    queue = Queue("q", queue_type="quorum")
    assert queue.declaration(default_delivery_limit=5).arguments["x-delivery-limit"] == 5
    declarations = queue.declarations(default_delivery_limit=7)
    assert [q.arguments.get("x-delivery-limit") for q in declarations.queues] == [None, 7]
    assert "x-delivery-limit" not in queue.queue_arguments()


def test_a_queue_delivery_limit_wins_over_the_default() -> None:
    queue = Queue("q", queue_type="quorum", delivery_limit=3)
    assert queue.queue_arguments(default_delivery_limit=5)["x-delivery-limit"] == 3


def test_delivery_limit_false_declares_none() -> None:
    queue = Queue("q", queue_type="quorum", delivery_limit=False)
    assert "x-delivery-limit" not in queue.queue_arguments(default_delivery_limit=5)
    # False on a classic queue is no contradiction: nothing is declared either way.
    assert Queue("c", queue_type="classic", delivery_limit=False).queue_arguments() == {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "c.dlq",
    }


def test_classic_queues_get_no_default_delivery_limit() -> None:
    queue = Queue("q")
    assert "x-delivery-limit" not in queue.queue_arguments("classic", default_delivery_limit=5)
    assert queue.queue_arguments("quorum", default_delivery_limit=5)["x-delivery-limit"] == 5


def test_consumer_timeout_is_declared_in_milliseconds() -> None:
    for queue_type in ("classic", "quorum"):
        queue = Queue("q", queue_type=queue_type, consumer_timeout=90)  # type: ignore[arg-type]
        assert queue.queue_arguments()["x-consumer-timeout"] == 90_000


@pytest.mark.parametrize("value", [0, -1, "60", True])
def test_consumer_timeout_must_be_positive_seconds(value: object) -> None:
    with pytest.raises(ConfigError, match=r"Queue 'q' consumer_timeout \(seconds\) must be"):
        Queue("q", consumer_timeout=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [("overflow", "drop-tail"), ("queue_type", "stream"), ("declare", "maybe")],
)
def test_choices_name_the_field(field: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"Queue 'q' {field} must be one of .*got '{value}'"):
        Queue("q", **{field: value})


@pytest.mark.parametrize("overflow", ["drop-head", "reject-publish", "reject-publish-dlx"])
def test_overflow_values(overflow: Any) -> None:
    assert Queue("q", overflow=overflow).queue_arguments()["x-overflow"] == overflow


@pytest.mark.parametrize("mode", ["declare", "passive", "off"])
def test_declare_modes(mode: Any) -> None:
    assert Queue("q", declare=mode).declare == mode


def test_routing_key_needs_an_exchange() -> None:
    with pytest.raises(ConfigError, match=r"Queue 'q': routing_key= needs exchange= too"):
        Queue("q", routing_key="k")


def test_routing_key_longer_than_255_bytes_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"Queue 'q' routing_key .* longer than 255 bytes"):
        Queue("q", exchange="x", routing_key="k" * 256)


def test_bindings_must_be_binding_objects() -> None:
    with pytest.raises(ConfigError, match=r"Queue 'q': bindings must be Binding objects"):
        Queue("q", bindings=[("x", "k")])  # type: ignore[list-item]


def test_dead_letter_name_must_not_be_empty() -> None:
    with pytest.raises(ConfigError, match=r"Queue 'q' dead_letter queue name must not be empty"):
        Queue("q", dead_letter="")


@pytest.mark.parametrize("make", [lambda: Queue("q", exchange=5), lambda: Binding(5)])
def test_exchange_must_be_a_name_or_an_exchange(make: Any) -> None:
    with pytest.raises(ConfigError, match="exchange"):
        make()


def test_exchange_type_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"Exchange 'x' type must be one of .*'x-delayed'"):
        Exchange("x", "x-delayed")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["direct", "topic", "fanout", "headers"])
def test_exchange_types(kind: Any) -> None:
    assert Exchange("x", kind).type == kind


def test_exchange_name_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"Exchange name .* longer than 255 bytes"):
        Exchange("x" * 256)
    with pytest.raises(ConfigError, match="Exchange name must be a string"):
        Exchange(None)  # type: ignore[arg-type]
    assert Exchange("").is_default


def test_builtin_exchanges() -> None:
    assert Exchange("").is_builtin
    assert Exchange("amq.topic", "topic").is_builtin
    assert not Exchange("amqx").is_builtin
    assert not Exchange("events").is_default


def test_binding_checks() -> None:
    with pytest.raises(ConfigError, match="default exchange"):
        Binding("")
    with pytest.raises(ConfigError, match=r"Binding routing_key .* longer than 255 bytes"):
        Binding("x", "k" * 256)
    assert Binding("events", "user.*").exchange_obj == Exchange("events")


# -- queue_arguments ------------------------------------------------------------------------


def test_default_arguments_are_the_dead_letter_queue() -> None:
    assert Queue("q").queue_arguments() == DLX


def test_quorum_queue_type() -> None:
    assert Queue("q", queue_type="quorum").queue_arguments() == {"x-queue-type": "quorum", **DLX}
    # The app default applies to queues that do not say...
    assert Queue("q").queue_arguments("quorum") == {"x-queue-type": "quorum", **DLX}
    # ...and not to those that do.
    assert Queue("q", queue_type="classic").queue_arguments("quorum") == DLX


def test_custom_dead_letter_queue_name() -> None:
    queue = Queue("q", dead_letter="graveyard")
    assert queue.dead_letter_queue == "graveyard"
    assert queue.queue_arguments() == {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "graveyard",
    }


def test_no_dead_letter_queue() -> None:
    queue = Queue("q", dead_letter=False)
    assert queue.dead_letter_queue is None
    assert queue.queue_arguments() == {}


def test_every_argument_in_order() -> None:
    queue = Queue(
        "q",
        queue_type="quorum",
        message_ttl=60,
        max_length=1000,
        overflow="reject-publish",
        expires=3600,
        delivery_limit=5,
        single_active_consumer=True,
        arguments={"x-quorum-initial-group-size": 3},
    )
    arguments = queue.queue_arguments()
    assert arguments == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "q.dlq",
        "x-message-ttl": 60_000,
        "x-max-length": 1000,
        "x-overflow": "reject-publish",
        "x-expires": 3_600_000,
        "x-delivery-limit": 5,
        "x-single-active-consumer": True,
        "x-quorum-initial-group-size": 3,
    }
    assert list(arguments)[-1] == "x-quorum-initial-group-size"


def test_max_priority_argument() -> None:
    assert Queue("q", max_priority=10, dead_letter=False).queue_arguments() == {
        "x-max-priority": 10
    }


@pytest.mark.parametrize(
    ("seconds", "millis"), [(1.5, 1500), (0.0004, 1), (0.0016, 2), (86400, 86_400_000)]
)
def test_durations_are_sent_in_whole_milliseconds(seconds: float, millis: int) -> None:
    arguments = Queue("q", message_ttl=seconds, expires=seconds).queue_arguments()
    assert arguments["x-message-ttl"] == millis
    assert arguments["x-expires"] == millis
    assert isinstance(arguments["x-message-ttl"], int)


def test_single_active_consumer_off_sends_nothing() -> None:
    assert "x-single-active-consumer" not in Queue("q").queue_arguments()


def test_extra_arguments_come_last_and_win() -> None:
    queue = Queue(
        "q",
        max_length=10,
        arguments={"x-custom": "v", "x-max-length": 99, "x-dead-letter-exchange": "dlx"},
    )
    arguments = queue.queue_arguments()
    assert arguments["x-max-length"] == 99
    assert arguments["x-dead-letter-exchange"] == "dlx"
    assert list(arguments)[-1] == "x-custom"


# -- declaration / declarations -------------------------------------------------------------


def test_declaration_of_a_classic_queue() -> None:
    assert Queue("q").declaration() == QueueDeclaration("q", durable=True, arguments=DLX)
    assert Queue("q", durable=False).declaration().durable is False


def test_quorum_queues_are_always_durable() -> None:
    assert Queue("q", durable=False, queue_type="quorum").declaration().durable is True
    assert Queue("q", durable=False).declaration("quorum").durable is True


def test_declarations_of_an_unbound_queue() -> None:
    assert Queue("q").declarations() == Declarations(
        exchanges=(),
        queues=(QueueDeclaration("q.dlq"), QueueDeclaration("q", arguments=DLX)),
        bindings=(),
    )


def test_declarations_without_dead_letter_queue() -> None:
    assert Queue("q", dead_letter=False).declarations() == Declarations(
        queues=(QueueDeclaration("q"),)
    )


def test_declarations_with_a_named_dead_letter_queue() -> None:
    names = [q.name for q in Queue("q", dead_letter="graveyard").declarations().queues]
    assert names == ["graveyard", "q"]


def test_dead_letter_queue_of_a_quorum_queue_is_quorum() -> None:
    for declarations in (
        Queue("q", queue_type="quorum").declarations(),
        Queue("q").declarations("quorum"),
    ):
        dlq, queue = declarations.queues
        assert dlq == QueueDeclaration("q.dlq", arguments={"x-queue-type": "quorum"})
        assert queue.arguments["x-queue-type"] == "quorum"
    dlq, _queue = Queue("q", queue_type="classic").declarations("quorum").queues
    assert dlq == QueueDeclaration("q.dlq")


def test_dead_letter_declaration() -> None:
    assert dead_letter_declaration("x.dlq") == QueueDeclaration("x.dlq", durable=True)
    assert dead_letter_declaration("x.dlq", "quorum").arguments == {"x-queue-type": "quorum"}


def test_builtin_exchanges_are_bound_to_but_not_declared() -> None:
    queue = Queue("audit", exchange=Exchange("amq.topic", "topic"), routing_key="audit.#")
    declarations = queue.declarations()
    assert declarations.exchanges == ()
    assert declarations.bindings == (BindingDeclaration("audit", "amq.topic", "audit.#"),)


def test_binding_to_the_default_exchange_is_not_made() -> None:
    queue = Queue("q", exchange="")
    assert queue.all_bindings() == ()


def test_all_bindings() -> None:
    queue = Queue("q", exchange="tasks", bindings=[Binding("events", "user.*")])
    assert queue.all_bindings() == (
        Binding(Exchange("tasks"), "q"),  # the routing key defaults to the queue name
        Binding(Exchange("events"), "user.*"),
    )


def test_declarations_order_exchanges_dlq_queue_bindings() -> None:
    mail = Exchange("mail", "topic")
    headers = Exchange("by-tenant", "headers")
    queue = Queue(
        "q",
        exchange=mail,
        routing_key="mail.#",
        bindings=[
            Binding(headers, arguments={"x-match": "all", "tenant": "acme"}),
            Binding(mail, "notify.#"),
            Binding("amq.direct", "q"),
        ],
    )
    assert queue.declarations() == Declarations(
        exchanges=(mail, headers),
        queues=(QueueDeclaration("q.dlq"), QueueDeclaration("q", arguments=DLX)),
        bindings=(
            BindingDeclaration("q", "mail", "mail.#"),
            BindingDeclaration("q", "by-tenant", "", {"x-match": "all", "tenant": "acme"}),
            BindingDeclaration("q", "mail", "notify.#"),
            BindingDeclaration("q", "amq.direct", "q"),
        ),
    )


def test_exchange_given_by_name_is_a_durable_direct_exchange() -> None:
    (exchange,) = Queue("q", exchange="tasks").declarations().exchanges
    assert exchange == Exchange("tasks", "direct", durable=True, auto_delete=False)


def test_empty_declarations_add_up() -> None:
    assert Declarations() + Declarations() == Declarations()


def test_declarations_add_up_without_duplicates() -> None:
    events = Exchange("events", "topic")
    a = Queue("a", exchange=events, routing_key="a.*")
    b = Queue("b", exchange=events, routing_key="b.*", dead_letter="shared.dlq")
    c = Queue("c", dead_letter="shared.dlq")
    total = a.declarations() + b.declarations() + c.declarations() + a.declarations()
    assert total.exchanges == (events,)
    assert [q.name for q in total.queues] == ["a.dlq", "a", "shared.dlq", "b", "c"]
    assert total.bindings == (
        BindingDeclaration("a", "events", "a.*"),
        BindingDeclaration("b", "events", "b.*"),
    )


def test_adding_the_same_declarations_is_idempotent() -> None:
    declarations = Queue("q").declarations()
    assert declarations + declarations == declarations
    assert Declarations() + declarations == declarations


def test_reply_queue_declaration() -> None:
    declaration = reply_queue("amqptasks.reply.app.1", 86400)
    assert declaration == QueueDeclaration(
        "amqptasks.reply.app.1", durable=True, arguments={"x-expires": 86_400_000}
    )
