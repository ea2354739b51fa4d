"""deadletters.describe: what a dead-lettered message says about itself (no broker).

Headers go through pika's own field-table codec, so the values look exactly as
pika hands them over from a real delivery (strings as str, AMQP timestamps as
aware datetimes, arrays as lists).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pika
import pika.data

from amqptasks import constants
from amqptasks.deadletters import describe

UTC = dt.timezone.utc
BODY = b'[[1, 2], {}, {"callbacks": null}]'


def _as_delivered(headers: dict[str, Any], **properties: Any) -> pika.BasicProperties:
    pieces: list[bytes] = []
    pika.data.encode_table(pieces, headers)
    decoded, _ = pika.data.decode_table(b"".join(pieces), 0)
    return pika.BasicProperties(headers=decoded, **properties)


def test_our_dead_letter_headers() -> None:
    properties = _as_delivered(
        {
            "task": "proj.add",
            "id": "tid-1",
            "argsrepr": "(1, 2)",
            "retries": 3,
            constants.HEADER_REASON: constants.REASON_MAX_RETRIES,
            constants.HEADER_ERROR: "ConnectionError('down')",
            constants.HEADER_EXC_TYPE: "ConnectionError",
            constants.HEADER_TRACEBACK: "Traceback (most recent call last): ...",
            constants.HEADER_ATTEMPTS: 4,
            constants.HEADER_WORKER: "worker@host",
            constants.HEADER_ORIGINAL_EXCHANGE: "tasks",
            constants.HEADER_ORIGINAL_ROUTING_KEY: "proj.add",
            constants.HEADER_DEAD_LETTERED_AT: "2024-01-02T03:04:05+00:00",
        },
        correlation_id="tid-1",
    )
    letter = describe(properties, BODY)
    assert letter.task == "proj.add"
    assert letter.task_id == "tid-1"
    assert letter.reason == "max-retries-exceeded"
    assert letter.error == "ConnectionError('down')"
    assert letter.exc_type == "ConnectionError"
    assert letter.traceback.startswith("Traceback")
    assert letter.attempts == 4
    assert letter.worker == "worker@host"
    assert letter.original_exchange == "tasks"
    assert letter.original_routing_key == "proj.add"
    assert letter.dead_lettered_at == "2024-01-02T03:04:05+00:00"
    assert letter.args_repr == "(1, 2)"
    assert letter.body == BODY
    assert letter.properties is properties
    assert letter.headers["retries"] == 3


def test_original_default_exchange_is_kept_empty() -> None:
    letter = describe(
        _as_delivered(
            {
                constants.HEADER_REASON: "rejected",
                constants.HEADER_ORIGINAL_EXCHANGE: "",
                constants.HEADER_ORIGINAL_ROUTING_KEY: "default",
            }
        ),
        BODY,
    )
    assert (letter.original_exchange, letter.original_routing_key) == ("", "default")


def test_bytes_headers_are_text() -> None:
    properties = pika.BasicProperties(
        headers={
            "task": b"proj.add",
            constants.HEADER_REASON: b"rejected",
            constants.HEADER_ERROR: b"caf\xc3\xa9 \xff",
        }
    )
    letter = describe(properties, BODY)
    assert letter.task == "proj.add"
    assert letter.reason == "rejected"
    assert letter.error.startswith("café ")


def _death(reason: str, queue: str, exchange: str, keys: list[str], when: dt.datetime) -> dict:
    return {
        "count": 1,
        "reason": reason,
        "queue": queue,
        "time": when,
        "exchange": exchange,
        "routing-keys": keys,
    }


def test_a_message_dead_lettered_by_the_broker_uses_the_newest_x_death() -> None:
    newest = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    older = dt.datetime(2024, 5, 6, 7, 0, 0, tzinfo=UTC)
    properties = _as_delivered(
        {
            "task": "proj.add",
            "id": "tid-2",
            "x-death": [
                _death("delivery_limit", "proj", "tasks", ["proj.add"], newest),
                _death(
                    "expired",
                    "amqptasks.delay.level.00",
                    "amqptasks.delay.level.00",
                    ["0.1.dabc"],
                    older,
                ),
            ],
            "x-first-death-reason": "expired",
            "x-last-death-reason": "delivery_limit",
        }
    )
    assert isinstance(properties.headers["x-death"][0]["time"], dt.datetime)
    letter = describe(properties, BODY)
    # the broker's "delivery_limit" is spelled as amqptasks spells its own reasons
    assert letter.reason == "delivery-limit"
    assert letter.original_exchange == "tasks"
    assert letter.original_routing_key == "proj.add"
    assert dt.datetime.fromisoformat(letter.dead_lettered_at) == newest
    assert letter.attempts is None
    assert letter.error == ""
    assert letter.worker == ""
    assert letter.task_id == "tid-2"


def test_a_message_rejected_to_the_dlq_by_the_broker() -> None:
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    letter = describe(
        _as_delivered({"x-death": [_death("rejected", "default", "", ["default"], when)]}),
        BODY,
    )
    assert letter.reason == "rejected"
    assert (letter.original_exchange, letter.original_routing_key) == ("", "default")
    assert letter.dead_lettered_at == when.isoformat()


def test_our_headers_win_over_x_death() -> None:
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    letter = describe(
        _as_delivered(
            {
                constants.HEADER_REASON: "failed",
                constants.HEADER_ORIGINAL_EXCHANGE: "tasks",
                constants.HEADER_ORIGINAL_ROUTING_KEY: "proj.mul",
                constants.HEADER_DEAD_LETTERED_AT: "2024-06-01T00:00:00+00:00",
                "x-death": [_death("expired", "q", "other", ["k"], when)],
            }
        ),
        BODY,
    )
    assert letter.reason == "failed"
    assert (letter.original_exchange, letter.original_routing_key) == ("tasks", "proj.mul")
    assert letter.dead_lettered_at == "2024-06-01T00:00:00+00:00"


def test_a_message_that_says_nothing() -> None:
    letter = describe(pika.BasicProperties(correlation_id="cid"), b"")
    assert letter.reason == "unknown"
    assert letter.task == ""
    assert letter.task_id == "cid"
    assert letter.attempts is None
    assert letter.original_exchange == ""
    assert letter.original_routing_key == ""
    assert letter.dead_lettered_at == ""
    assert dict(letter.headers) == {}


def test_an_x_death_without_routing_keys() -> None:
    letter = describe(_as_delivered({"x-death": [{"reason": "expired", "queue": "q"}]}), b"")
    assert letter.reason == "expired"
    assert letter.original_routing_key == ""
    assert letter.original_exchange == ""
