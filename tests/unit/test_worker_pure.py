"""The worker's pure helpers: dead-letter messages, expiry, node names."""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

import pytest

from amqptasks.protocol.envelope import OutgoingMessage, TaskMessage
from amqptasks.worker.deadletter import ERROR_TEXT_LIMIT, dead_letter_message
from amqptasks.worker.execution import is_expired
from amqptasks.worker.options import expand_hostname

# -- dead_letter_message ---------------------------------------------------------------------


def _dead_letter(**overrides: Any) -> OutgoingMessage:
    options: dict[str, Any] = {
        "queue": "emails",
        "dead_letter_queue": "emails.dlq",
        "body": b"\x00not json",
        "headers": {"task": "proj.send", "id": "tid", "x-tenant": "acme"},
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "message_id": "tid",
        "correlation_id": "tid",
        "reply_to": "amqptasks.reply.app.1",
        "exchange": "",
        "routing_key": "emails",
        "reason": "decode-error",
        "error": "cannot decode json body",
        "worker": "worker@box",
        "exc_type": "DecodeError",
    }
    options.update(overrides)
    return dead_letter_message(**options)


def test_dead_letter_goes_to_the_queues_dlq_with_the_original_body() -> None:
    message = _dead_letter()
    assert message.exchange == ""
    assert message.routing_key == "emails.dlq"
    assert message.body == b"\x00not json"
    assert message.content_type == "application/json"
    assert message.content_encoding == "utf-8"
    assert message.message_id == "tid"
    assert message.correlation_id == "tid"
    assert message.reply_to == "amqptasks.reply.app.1"
    assert message.delivery_mode == 2


def test_dead_letter_drops_the_brokers_dead_letter_headers() -> None:
    headers = _dead_letter(
        headers={"task": "t", "x-death": [{"count": 1}], "x-first-death-queue": "q"}
    ).headers
    assert "x-death" not in headers and "x-first-death-queue" not in headers
    assert headers["task"] == "t"


def test_dead_letter_headers_say_why() -> None:
    before = dt.datetime.now(dt.timezone.utc)
    headers = _dead_letter(exchange="tasks", routing_key="mail.send").headers
    after = dt.datetime.now(dt.timezone.utc)
    # The original headers are kept.
    assert headers["task"] == "proj.send"
    assert headers["x-tenant"] == "acme"
    assert headers["x-amqptasks-reason"] == "decode-error"
    assert headers["x-amqptasks-error"] == "cannot decode json body"
    assert headers["x-amqptasks-worker"] == "worker@box"
    assert headers["x-amqptasks-original-exchange"] == "tasks"
    assert headers["x-amqptasks-original-routing-key"] == "mail.send"
    assert headers["x-amqptasks-exc-type"] == "DecodeError"
    when = dt.datetime.fromisoformat(headers["x-amqptasks-dead-lettered-at"])
    assert when.utcoffset() == dt.timedelta(0)
    assert before <= when <= after


def test_dead_letter_without_exc_type_has_no_such_header() -> None:
    headers = _dead_letter(exc_type=None).headers
    assert "x-amqptasks-exc-type" not in headers


def test_dead_letter_error_text_is_bounded() -> None:
    headers = _dead_letter(error="e" * 10_000).headers
    assert headers["x-amqptasks-error"] == "e" * ERROR_TEXT_LIMIT


def test_dead_letter_of_a_bare_message() -> None:
    message = _dead_letter(
        headers=None, content_type=None, content_encoding=None, message_id=None, correlation_id="c"
    )
    assert message.content_type == "application/octet-stream"
    assert message.content_encoding == "binary"
    assert message.message_id == "c"
    assert message.headers["x-amqptasks-reason"] == "decode-error"


def test_dead_letter_does_not_change_the_original_headers() -> None:
    original = {"task": "proj.send", "id": "tid"}
    _dead_letter(headers=original)
    assert original == {"task": "proj.send", "id": "tid"}


# -- is_expired ------------------------------------------------------------------------------

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def _message(expires: str | None) -> TaskMessage:
    return TaskMessage(task="proj.add", id="tid", args=[], kwargs={}, expires=expires)


@pytest.mark.parametrize(
    ("expires", "expired"),
    [
        (None, False),
        ("", False),
        ("2030-01-01T11:59:59+00:00", True),
        ("2030-01-01T12:00:00+00:00", True),
        ("2030-01-01T12:00:01+00:00", False),
        # Aware, in another zone: 13:30+02:00 is 11:30 UTC.
        ("2030-01-01T13:30:00+02:00", True),
        ("2030-01-01T12:30:00-02:00", False),
        # Naive means UTC.
        ("2030-01-01T11:00:00", True),
        ("2030-01-01T13:00:00", False),
        # "Z" as other Celery-speaking producers write it.
        ("2030-01-01T11:00:00Z", True),
        # Not a time: the task runs rather than being dropped.
        ("next tuesday", False),
        ("2030-13-45T99:00:00", False),
    ],
)
def test_is_expired(expires: str | None, expired: bool) -> None:
    assert is_expired(_message(expires), now=NOW) is expired


def test_is_expired_defaults_to_the_current_time() -> None:
    past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)).isoformat()
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)).isoformat()
    assert is_expired(_message(past)) is True
    assert is_expired(_message(future)) is False


# -- expand_hostname -------------------------------------------------------------------------


@pytest.fixture
def fqdn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "box.example.com")


@pytest.mark.usefixtures("fqdn")
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (None, "worker@box.example.com"),
        ("", "worker@box.example.com"),
        ("%h", "box.example.com"),
        ("%n", "box"),
        ("%d", "example.com"),
        ("celery@%n.%d", "celery@box.example.com"),
        ("plain-name", "plain-name"),
    ],
)
def test_expand_hostname(template: str | None, expected: str) -> None:
    assert expand_hostname(template) == expected


@pytest.mark.usefixtures("fqdn")
def test_expand_hostname_pid() -> None:
    assert expand_hostname("w%p@%n") == f"w{os.getpid()}@box"


def test_expand_hostname_without_a_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "box")
    assert expand_hostname("%n|%d|%h") == "box||box"
