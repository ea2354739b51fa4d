"""Decisions the sync and async producers share (pure): publish retries, resending a return."""

from __future__ import annotations

from typing import Any

import pytest

from amqptasks import App
from amqptasks._client import redeclare_when_returned
from amqptasks._retrypublish import PublishRetryPolicy
from amqptasks.exceptions import ConnectionLost, PublishNotConfirmed, Unroutable
from amqptasks.publishing import PreparedCall, prepare_call
from amqptasks.topology.model import Queue

URL = "amqp://guest:guest@127.0.0.1:1//"


def _call(app: App, **options: Any) -> PreparedCall:
    return prepare_call(
        settings=app.settings,
        router=app.router,
        task_name="proj.add",
        args=(1, 2),
        kwargs=None,
        reply_to="r",
        **options,
    )


def test_a_returned_call_to_a_queue_is_declared_again_and_resent() -> None:
    app = App("t", broker_url=URL, queues=[Queue("mail")])
    assert redeclare_when_returned(_call(app, queue="mail"))


def test_a_returned_delayed_call_is_declared_again_and_resent() -> None:
    app = App("t", broker_url=URL)
    call = _call(app, exchange="events", routing_key="x", countdown=5)
    assert call.route.queue is None
    assert redeclare_when_returned(call)


def test_a_returned_call_to_a_bare_exchange_is_the_callers_error() -> None:
    app = App("t", broker_url=URL)
    call = _call(app, exchange="events", routing_key="x")
    assert call.route.queue is None
    assert not redeclare_when_returned(call)


def test_publish_attempts_wait_then_give_up_with_the_last_error() -> None:
    policy = PublishRetryPolicy(max_retries=2, interval_start=0.1, interval_step=0.3)
    attempts = policy.attempts("tid")
    assert attempts.wait_or_raise(ConnectionLost("reset")) == pytest.approx(0.1)
    assert attempts.wait_or_raise(PublishNotConfirmed("nack")) == pytest.approx(0.2)
    last = ConnectionLost("reset again")
    with pytest.raises(ConnectionLost) as raised:
        attempts.wait_or_raise(last)
    assert raised.value is last


def test_publish_attempts_never_retry_an_unroutable_message() -> None:
    attempts = PublishRetryPolicy(max_retries=5).attempts("tid")
    error = Unroutable("NO_ROUTE")
    with pytest.raises(Unroutable) as raised:
        attempts.wait_or_raise(error)
    assert raised.value is error
