"""declaration_steps driven by hand, mismatch reports and argument differences (pure)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from amqptasks.exceptions import (
    AccessRefused,
    ChannelError,
    ConfigError,
    NotFound,
    TopologyMismatch,
)
from amqptasks.topology.declare import (
    Step,
    argument_differences,
    declaration_steps,
    mismatch_report,
)
from amqptasks.topology.diff import compare
from amqptasks.topology.model import (
    BindingDeclaration,
    Declarations,
    Exchange,
    Queue,
    QueueDeclaration,
)

if TYPE_CHECKING:
    from collections.abc import Callable

MAIL_X = Exchange("mail", "topic")
EVENTS_X = Exchange("events", "fanout")
DLQ = QueueDeclaration("mail.dlq")
DLX_ARGS = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "mail.dlq"}
MAIL_Q = QueueDeclaration("mail", arguments=DLX_ARGS)
AUDIT_Q = QueueDeclaration("audit", arguments={"x-max-length": 5})
BIND_MAIL = BindingDeclaration("mail", "mail", "mail.#")
BIND_AUDIT = BindingDeclaration("audit", "events", "")
DECLARATIONS = Declarations(
    exchanges=(MAIL_X, EVENTS_X),
    queues=(DLQ, MAIL_Q, AUDIT_Q),
    bindings=(BIND_MAIL, BIND_AUDIT),
)

MAX_LENGTH_TEXT = (
    "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'mail' in vhost '/': "
    "received none but current is the value '10' of type 'signedint'"
)
AUDIT_TEXT = (
    "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'audit' in vhost '/': "
    "received the value '5' of type 'signedint' but current is the value '50' of type "
    "'signedint'"
)


def mismatch(text: str = MAX_LENGTH_TEXT) -> TopologyMismatch:
    return TopologyMismatch(text, reply_code=406, reply_text=text)


def not_found(what: str) -> NotFound:
    text = f"NOT_FOUND - no {what} in vhost '/'"
    return NotFound(text, reply_code=404, reply_text=text)


def drive(
    declarations: Declarations,
    mode: str,
    answer: Callable[[Step], Any] = lambda step: None,
    steps: list[Step] | None = None,
) -> list[Step]:
    """Run the flow as a transport would, answering each step with ``answer(step)``."""
    steps = [] if steps is None else steps
    flow = declaration_steps(declarations, mode)
    try:
        step = next(flow)
        while True:
            steps.append(step)
            step = flow.send(answer(step))
    except StopIteration:
        return steps


def answers(table: dict[tuple[str, str], Any]) -> Callable[[Step], Any]:
    """Answer steps by (kind, name); everything else succeeds."""

    def answer(step: Step) -> Any:
        target = step.target
        if isinstance(target, tuple):
            return table.get(("live", target[1]))
        if isinstance(target, BindingDeclaration):
            return table.get(("bind", target.queue))
        return table.get((step.kind, target.name))

    return answer


# -- modes ----------------------------------------------------------------------------------


def test_off_yields_nothing() -> None:
    assert drive(DECLARATIONS, "off") == []


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="declare mode must be one of declare, passive, off"):
        drive(DECLARATIONS, "create")


def test_declare_yields_exchanges_queues_then_bindings() -> None:
    assert drive(DECLARATIONS, "declare") == [
        Step("exchange", MAIL_X),
        Step("exchange", EVENTS_X),
        Step("queue", DLQ),
        Step("queue", MAIL_Q),
        Step("queue", AUDIT_Q),
        Step("bind", BIND_MAIL),
        Step("bind", BIND_AUDIT),
    ]
    assert not any(step.passive for step in drive(DECLARATIONS, "declare"))


def test_passive_checks_exchanges_and_queues_and_binds_nothing() -> None:
    assert drive(DECLARATIONS, "passive") == [
        Step("exchange", MAIL_X, passive=True),
        Step("exchange", EVENTS_X, passive=True),
        Step("queue", DLQ, passive=True),
        Step("queue", MAIL_Q, passive=True),
        Step("queue", AUDIT_Q, passive=True),
    ]


@pytest.mark.parametrize("mode", ["declare", "passive", "off"])
def test_nothing_to_declare(mode: str) -> None:
    assert drive(Declarations(), mode) == []


# -- mismatches -----------------------------------------------------------------------------


def test_a_mismatch_asks_for_the_live_definition_then_goes_on() -> None:
    steps: list[Step] = []
    with pytest.raises(TopologyMismatch) as caught:
        drive(DECLARATIONS, "declare", answers({("queue", "mail"): mismatch()}), steps)
    assert steps == [
        Step("exchange", MAIL_X),
        Step("exchange", EVENTS_X),
        Step("queue", DLQ),
        Step("queue", MAIL_Q),
        Step("live", ("queue", "mail")),
        Step("queue", AUDIT_Q),
        Step("bind", BIND_MAIL),
        Step("bind", BIND_AUDIT),
    ]
    assert caught.value.reply_code == 406
    assert caught.value.reply_text == "PRECONDITION_FAILED"


def test_any_406_channel_error_counts_as_a_mismatch() -> None:
    error = ChannelError(MAX_LENGTH_TEXT, reply_code=406, reply_text=MAX_LENGTH_TEXT)
    steps: list[Step] = []
    with pytest.raises(TopologyMismatch, match="queue 'mail'"):
        drive(DECLARATIONS, "declare", answers({("queue", "mail"): error}), steps)
    assert Step("live", ("queue", "mail")) in steps


def test_every_mismatch_is_reported_at_once() -> None:
    exchange_text = (
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'events' in vhost '/': "
        "received 'fanout' but current is 'direct'"
    )
    table = {
        ("exchange", "events"): mismatch(exchange_text),
        ("queue", "mail"): mismatch(),
        ("queue", "audit"): mismatch(AUDIT_TEXT),
    }
    steps: list[Step] = []
    with pytest.raises(TopologyMismatch) as caught:
        drive(DECLARATIONS, "declare", answers(table), steps)
    assert [s.target for s in steps if s.kind == "live"] == [
        ("exchange", "events"),
        ("queue", "mail"),
        ("queue", "audit"),
    ]
    message = str(caught.value)
    assert "exchange 'events' exists with other arguments" in message
    assert "queue 'mail' exists with other arguments" in message
    assert "queue 'audit' exists with other arguments" in message
    assert "x-max-length: live '10', wanted (absent)" in message
    assert "x-max-length: live '50', wanted '5'" in message
    assert exchange_text in message  # not parsed: the broker's words are shown
    assert message.count("ways out") == 3
    # One object per block, in declaration order.
    assert message.index("'events'") < message.index("'mail'") < message.index("'audit'")


def test_report_with_the_live_definition_lists_every_difference() -> None:
    live = {
        "name": "mail",
        "durable": True,
        "arguments": {**DLX_ARGS, "x-max-length": 10, "x-overflow": "reject-publish"},
    }
    wanted = QueueDeclaration("mail", arguments={**DLX_ARGS, "x-message-ttl": 60_000})
    table = {("queue", "mail"): mismatch(), ("live", "mail"): live}
    with pytest.raises(TopologyMismatch) as caught:
        drive(Declarations(queues=(wanted,)), "declare", answers(table))
    message = str(caught.value)
    assert message.splitlines()[1:4] == [
        "  x-max-length: live 10, wanted (absent)",
        "  x-message-ttl: live (absent), wanted 60000",
        "  x-overflow: live 'reject-publish', wanted (absent)",
    ]
    assert "only the first difference is known" not in message
    # Equal arguments are not listed as differences.
    assert not [line for line in message.splitlines() if line.startswith("  x-dead-letter")]
    assert message.splitlines()[4].startswith("  ways out: declare the queue")


def test_report_without_the_live_definition_uses_the_broker_text() -> None:
    table = {("queue", "mail"): mismatch(), ("live", "mail"): None}
    with pytest.raises(TopologyMismatch) as caught:
        drive(DECLARATIONS, "declare", answers(table))
    message = str(caught.value)
    assert "queue 'mail' exists with other arguments" in message
    assert "x-max-length: live '10', wanted (absent)" in message
    assert "only the first difference is known" in message
    assert "management_url" in message


def test_a_live_answer_that_is_not_a_mapping_counts_as_unknown() -> None:
    table = {("queue", "mail"): mismatch(), ("live", "mail"): "garbage"}
    with pytest.raises(TopologyMismatch, match="only the first difference is known"):
        drive(DECLARATIONS, "declare", answers(table))


def test_live_definition_equal_to_the_wanted_one_shows_the_broker_text() -> None:
    text = (
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'mail' in vhost '/': "
        "received 'true' but current is 'false'"
    )
    table = {("queue", "mail"): mismatch(text), ("live", "mail"): {"arguments": DLX_ARGS}}
    with pytest.raises(TopologyMismatch) as caught:
        drive(DECLARATIONS, "declare", answers(table))
    assert f"broker said: {text}" in str(caught.value)


# -- passive mode and other refusals --------------------------------------------------------


def test_passive_reports_every_missing_object_at_once() -> None:
    table = {
        ("exchange", "events"): not_found("exchange 'events'"),
        ("queue", "mail.dlq"): not_found("queue 'mail.dlq'"),
        ("queue", "audit"): not_found("queue 'audit'"),
    }
    steps: list[Step] = []
    with pytest.raises(NotFound) as caught:
        drive(DECLARATIONS, "passive", answers(table), steps)
    assert len(steps) == 5  # every object was checked
    message = str(caught.value)
    assert "exchange 'events', queue 'mail.dlq', queue 'audit'" in message
    assert "'mail'," not in message
    assert caught.value.reply_code == 404


def test_passive_with_everything_present_succeeds() -> None:
    assert len(drive(DECLARATIONS, "passive")) == 5


def test_not_found_in_declare_mode_propagates_at_once() -> None:
    error = not_found("exchange 'mail'")
    steps: list[Step] = []
    with pytest.raises(NotFound) as caught:
        drive(DECLARATIONS, "declare", answers({("bind", "mail"): error}), steps)
    assert caught.value is error
    assert steps[-1] == Step("bind", BIND_MAIL)


@pytest.mark.parametrize("mode", ["declare", "passive"])
def test_access_refused_propagates(mode: str) -> None:
    error = AccessRefused(
        "ACCESS_REFUSED", reply_code=403, reply_text="ACCESS_REFUSED - configure access"
    )
    steps: list[Step] = []
    with pytest.raises(AccessRefused) as caught:
        drive(DECLARATIONS, mode, answers({("queue", "mail.dlq"): error}), steps)
    assert caught.value is error
    assert steps[-1] == Step("queue", DLQ, passive=mode == "passive")
    assert len(steps) == 3


def test_other_exceptions_propagate() -> None:
    error = RuntimeError("connection went away")
    with pytest.raises(RuntimeError) as caught:
        drive(DECLARATIONS, "declare", lambda step: error)
    assert caught.value is error


# -- argument_differences -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "live", "expected"),
    [
        ({}, {}, []),
        ({"x-max-length": 10}, {"x-max-length": 10}, []),
        ({"x-max-length": 10}, {}, [("x-max-length", None, 10)]),
        ({}, {"x-max-length": 10}, [("x-max-length", 10, None)]),
        ({"x-max-length": 10}, {"x-max-length": 20}, [("x-max-length", 20, 10)]),
        ({"x-max-length": 10}, {"x-max-length": "10"}, [("x-max-length", "10", 10)]),
        (
            {"x-queue-type": "quorum", "x-b": 1, "x-a": 1},
            {"x-queue-type": "classic", "x-c": 2, "x-a": 1},
            [("x-b", None, 1), ("x-c", 2, None), ("x-queue-type", "classic", "quorum")],
        ),
    ],
)
def test_argument_differences(
    wanted: dict[str, Any], live: dict[str, Any], expected: list[tuple[str, Any, Any]]
) -> None:
    assert argument_differences(wanted, live) == expected


@pytest.mark.parametrize(
    ("wanted", "live", "expected"),
    [
        # RabbitMQ 4.x reports the type of every queue; 3.x only when it was declared.
        ({}, {"x-queue-type": "classic"}, []),
        ({"x-queue-type": "classic"}, {}, []),
        ({"x-max-length": 10}, {"x-queue-type": "classic", "x-max-length": 10}, []),
        # Only the broker's default is filled in: a quorum queue is still a difference.
        ({}, {"x-queue-type": "quorum"}, [("x-queue-type", "quorum", None)]),
        ({"x-queue-type": "quorum"}, {}, [("x-queue-type", None, "quorum")]),
        (
            {"x-queue-type": "quorum"},
            {"x-queue-type": "classic"},
            [("x-queue-type", "classic", "quorum")],
        ),
    ],
)
def test_a_default_the_broker_fills_in_is_not_a_difference(
    wanted: dict[str, Any], live: dict[str, Any], expected: list[tuple[str, Any, Any]]
) -> None:
    assert argument_differences(wanted, live) == expected


def test_diff_of_classic_queues_as_rabbitmq_4_reports_them_is_ok() -> None:
    wanted = Queue("work", max_priority=5).declarations()
    live_queues = {
        q.name: {"durable": True, "arguments": {"x-queue-type": "classic", **q.arguments}}
        for q in wanted.queues
    }
    rows = compare(wanted, live_queues, None, None)
    assert [(row.name, row.status) for row in rows] == [("work.dlq", "ok"), ("work", "ok")]


# -- mismatch_report ------------------------------------------------------------------------


def test_mismatch_report_parses_a_received_value() -> None:
    text = (
        "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue 'q' in vhost '/': "
        "received the value '10' of type 'signedint' but current is none"
    )
    report = mismatch_report("queue", "q", {"x-max-priority": 10}, None, text)
    assert "x-max-priority: live (absent), wanted '10'" in report


def test_mismatch_report_ways_out() -> None:
    report = mismatch_report("queue", "mail", DLX_ARGS, {"x-max-length": 10}, "")
    assert report.startswith("queue 'mail' exists with other arguments than the app declares:")
    assert "ways out" in report
    assert "{'x-max-length': 10}" in report  # declare it as it exists
    assert "declare='passive'" in report
    assert "rabbitmqctl delete_queue mail" in report


def test_mismatch_report_ways_out_for_an_exchange_are_real_commands() -> None:
    report = mismatch_report("exchange", "events", {}, None, "")
    assert "ways out" in report
    assert "delete_exchange" not in report


ODD_TEXTS = [
    "",
    "PRECONDITION_FAILED",
    "inequivalent arg",
    "inequivalent arg 'x-max-length' for queue 'q'",
    "inequivalent arg 'x-max-length' for queue 'q' in vhost '/': received",
    "inequivalent arg '' for queue '' in vhost '/': received none but current is none",
    "inequivalent arg 'x' for queue 'it's' in vhost '/': received none but current is none",
    "inequivalent arg 'x' for stream 's': received none but current is the value '1'",
    "received the value 'a' but current is the value 'b'",
    "((( [ * ? \\ $ ^ {0} %s %(x)s",
    "PRÉCONDITION ✗ \u2013 ünïcode 'x' \x00 \n second line",
    "received none but current is the value '" + "9" * 5000,
    "x" * 100_000,
]


@pytest.mark.parametrize("text", ODD_TEXTS)
@pytest.mark.parametrize("live", [None, {}, {"x-a": [1, {"b": None}]}])
@pytest.mark.parametrize("kind", ["queue", "exchange", "bind"])
def test_mismatch_report_never_crashes(text: str, live: dict[str, Any] | None, kind: str) -> None:
    report = mismatch_report(kind, "q'\n{}", {"x-a": None, "x-b": object()}, live, text)
    assert isinstance(report, str)
    assert report.startswith(f"{kind} ")
    assert "ways out" in report
