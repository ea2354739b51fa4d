"""A publisher cannot get a poison message past the delivery cap with counter headers (#13).

The cap is checked before anything else is read, and the count trusted follows the
queue's declared type: on a classic queue our own counter (read leniently: a value
that is not a whole number >= 0 counts as none), never a ``x-delivery-count``
header, which only quorum queues set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.conftest import lines, wait_for

if TYPE_CHECKING:
    from pathlib import Path


def _basic_get(amqp: Any, queue: str) -> Any:
    method, properties, body = amqp.basic_get(queue, auto_ack=False)
    return (method, properties, body) if method is not None else None


@pytest.mark.parametrize(
    "headers",
    [
        {"x-amqptasks-deliveries": "zzz"},
        {"x-amqptasks-deliveries": -100},
        {"x-delivery-count": 0},
        {"x-delivery-count": "zzz"},
    ],
    ids=["deliveries-text", "deliveries-negative", "fake-quorum-count", "quorum-count-text"],
)
def test_counter_headers_do_not_lift_the_delivery_cap(
    core: Any,
    start_worker: Any,
    queue_name: str,
    tmp_path: Path,
    amqp: Any,
    headers: dict[str, Any],
) -> None:
    ledger = tmp_path / "ledger"
    env = {"AMQPTASKS_WORKER_MAX_DELIVERIES": "2"}
    core.die.apply_async((str(ledger),), queue=queue_name, ignore_result=True, headers=headers)
    for run in (1, 2):
        worker = start_worker("-Q", queue_name, env=env)
        worker.wait(30)  # the task SIGKILLs it
        assert lines(ledger) == ["started"] * run
    start_worker("-Q", queue_name, env=env)
    _method, properties, _body = wait_for(
        lambda: _basic_get(amqp, f"{queue_name}.dlq"), what="the poison message in the DLQ"
    )
    assert properties.headers["x-amqptasks-reason"] == "delivery-limit"
    assert properties.headers["x-amqptasks-attempts"] == 3
    assert lines(ledger) == ["started", "started"]


@pytest.mark.parametrize("case", ["pickle", "far-eta"])
def test_a_caller_is_told_at_once_when_its_message_is_dead_lettered_before_it_runs(
    core: Any, start_worker: Any, queue_name: str, amqp: Any, case: str
) -> None:
    """`--serializer pickle --wait` hung 30 s; an eta beyond the delay levels looped (#13)."""
    import datetime as dt
    import json
    import pickle

    import pika

    start_worker("-Q", queue_name)  # the core app: json, msgpack, yaml only
    replies = amqp.queue_declare("", exclusive=True).method.queue
    headers: dict[str, Any] = {"task": core.add.name, "id": f"told-{case}", "lang": "py"}
    if case == "pickle":
        body, content_type, why = (
            pickle.dumps([[1, 2], {}, {}]),
            "application/x-python-serialize",
            "accept_content",
        )
    else:  # as a Celery client sends an ETA, for the worker to hold
        headers["eta"] = dt.datetime(9999, 12, 31, tzinfo=dt.timezone.utc).isoformat()
        body, content_type, why = (
            json.dumps([[1, 2], {}, {}]).encode(),
            "application/json",
            "delay levels reach",
        )
    amqp.basic_publish(
        "",
        queue_name,
        body,
        pika.BasicProperties(
            content_type=content_type,
            content_encoding="binary" if case == "pickle" else "utf-8",
            headers=headers,
            correlation_id=f"told-{case}",
            reply_to=replies,
            delivery_mode=2,
        ),
        mandatory=True,
    )
    _method, properties, raw = wait_for(
        lambda: _basic_get(amqp, replies), timeout=10, what="a FAILURE reply"
    )
    reply = json.loads(raw)
    assert properties.correlation_id == f"told-{case}"
    assert (reply["task_id"], reply["status"]) == (f"told-{case}", "FAILURE")
    assert why in reply["result"]["exc_message"][0]
    dead = wait_for(lambda: _basic_get(amqp, f"{queue_name}.dlq"), what="the dead letter")
    assert dead[1].headers["x-amqptasks-reason"] == (
        "decode-error" if case == "pickle" else "bad-eta"
    )
