"""Hostile or odd messages from raw publishers are settled, and their headers survive (#13)."""

from __future__ import annotations

import asyncio
import bz2
import datetime as dt
import decimal
import json
import subprocess
from typing import Any

import pika
import pytest

from amqptasks import ConfigError
from tests.integration.conftest import cli_env, wait_for

#: One header of every AMQP field type pika can send, nested ones included.
TYPED_HEADERS: dict[str, Any] = {
    "x-bytes": b"\x00\xffraw bytes",
    "x-decimal": decimal.Decimal("3.14"),
    "x-timestamp": dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc),
    "x-table": {"a": {"b": [1, b"\x01", None, "s"]}, "n": None},
    "x-array": [1, "two", [3, [4]], {"k": decimal.Decimal("-0.5")}],
    "x-void": None,
    "x-long": 2**40,
    "x-min-long": -(2**63),
    "x-double": 0.1,
    "x-bool": False,
    "x-text": "日本語",
}


def _publish(
    channel: Any,
    queue: str,
    task: str,
    task_id: str,
    body: Any,
    *,
    headers: dict[str, Any] | None = None,
    content_type: str = "application/json",
    raw: bytes | None = None,
) -> None:
    channel.basic_publish(
        "",
        queue,
        raw if raw is not None else json.dumps(body).encode(),
        pika.BasicProperties(
            content_type=content_type,
            content_encoding="utf-8",
            headers={"task": task, "id": task_id, **(headers or {})},
            delivery_mode=2,
            correlation_id=task_id,
        ),
        mandatory=True,
    )


def _dead_letters(channel: Any, queue: str, expected: int) -> dict[str, Any]:
    """``{task id: properties}`` of ``expected`` messages taken from ``<queue>.dlq``."""
    found: dict[str, Any] = {}

    def fetch() -> bool:
        method, properties, _body = channel.basic_get(f"{queue}.dlq", auto_ack=True)
        if method is not None:
            found[properties.headers["id"]] = properties
        return len(found) >= expected

    wait_for(fetch, timeout=60, what=f"{expected} message(s) in {queue}.dlq")
    return found


def _assert_typed_headers_intact(headers: dict[str, Any]) -> None:
    for key, value in TYPED_HEADERS.items():
        assert headers[key] == value, key


def test_every_amqp_type_survives_delay_retries_and_dead_letter(
    core: Any, start_worker: Any, queue_name: str, amqp: Any, rabbit: Any
) -> None:
    """Before: a byte array made every re-publish raise TypeError; the message stuck unacked."""
    start_worker("-Q", queue_name)
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)).isoformat()
    # eta ahead: moved to the delay levels, back, run, fails: dead-lettered
    _publish(
        amqp,
        queue_name,
        core.fail.name,
        "typed-eta",
        [["x"], {}, None],
        headers={**TYPED_HEADERS, "eta": soon},
    )
    # retried 3 times through the delay levels, then dead-lettered
    _publish(
        amqp,
        queue_name,
        core.always_fails.name,
        "typed-retry",
        [["/dev/null", "t"], {}, None],
        headers=TYPED_HEADERS,
    )
    dead = _dead_letters(amqp, queue_name, 2)
    assert dead["typed-eta"].headers["x-amqptasks-reason"] == "failed"
    assert dead["typed-retry"].headers["x-amqptasks-reason"] == "max-retries-exceeded"
    assert dead["typed-retry"].headers["retries"] == 3
    for properties in dead.values():
        _assert_typed_headers_intact(properties.headers)
    assert core.add.apply_async((1, 2), queue=queue_name).get(timeout=20) == 3
    assert rabbit.queue_depths()[queue_name] == (0, 0)


@pytest.mark.parametrize("transport", ["sync", "async"])
def test_producers_send_every_amqp_type_and_name_a_header_they_cannot(
    core: Any, start_worker: Any, queue_name: str, amqp: Any, transport: str
) -> None:
    """Before: the async producer raised a bare TypeError for bytes, the sync one sent sets."""
    start_worker("-Q", queue_name)
    options = {"queue": queue_name, "headers": TYPED_HEADERS, "task_id": f"{transport}-typed"}
    if transport == "sync":
        core.fail.apply_async(("x",), **options)
    else:
        asyncio.run(core.fail.aapply_async(("x",), **options))
    _assert_typed_headers_intact(_dead_letters(amqp, queue_name, 1)[f"{transport}-typed"].headers)
    for bad in (
        {"x-set": {1, 2}},
        {"x-huge": 2**64},
        {"x-obj": object()},
        {"k" * 300: 1},
        {"x-nan": [float("nan")]},  # RabbitMQ would close the connection
    ):
        with pytest.raises(ConfigError, match="cannot be sent") as caught:
            if transport == "sync":
                core.add.apply_async((1, 2), queue=queue_name, headers=bad)
            else:
                asyncio.run(core.add.aapply_async((1, 2), queue=queue_name, headers=bad))
        assert str(next(iter(bad)))[:20] in str(caught.value)


def test_malformed_messages_are_dead_lettered_with_a_reason(
    core: Any, start_worker: Any, queue_name: str, amqp: Any, rabbit: Any
) -> None:
    """More than the prefetch window of each: none may stick unacked (before: the embed did)."""
    worker = start_worker("-Q", queue_name, "-c", "2")
    cases: dict[str, tuple[str, dict[str, Any], bytes | None]] = {}
    for n in range(10):
        cases[f"embed-list-{n}"] = ("decode-error", {}, b"[[1, 2], {}, [1]]")
        cases[f"embed-str-{n}"] = ("decode-error", {}, b'[[1, 2], {}, "chain"]')
    cases["retries-negative"] = ("bad-message", {"retries": -3}, None)
    cases["retries-text"] = ("bad-message", {"retries": "zzz"}, None)
    cases["ignore-result-maybe"] = ("bad-message", {"ignore_result": "maybe"}, None)
    cases["eta-garbage"] = ("bad-message", {"eta": "zzz"}, None)
    cases["timelimit-text"] = ("bad-message", {"timelimit": "10"}, None)
    bomb = bz2.compress(b"[[1, 2], {}, null]" + b" " * (256 * 1024 * 1024))
    cases["bomb"] = ("too-large", {"compression": "application/x-bz2"}, bomb)
    for task_id, (_reason, headers, raw) in cases.items():
        _publish(
            amqp, queue_name, core.add.name, task_id, [[1, 2], {}, None], headers=headers, raw=raw
        )
    dead = _dead_letters(amqp, queue_name, len(cases))
    for task_id, (reason, _headers, _raw) in cases.items():
        assert dead[task_id].headers["x-amqptasks-reason"] == reason, task_id
        assert dead[task_id].headers["x-amqptasks-error"], task_id
    assert "256 MiB" not in worker.log()
    assert core.add.apply_async((1, 2), queue=queue_name).get(timeout=20) == 3
    assert rabbit.queue_depths()[queue_name] == (0, 0)


def test_a_text_false_ignore_result_still_gets_its_result(
    core: Any, start_worker: Any, queue_name: str, amqp: Any, unique_name: Any
) -> None:
    """Before: ``ignore_result: "false"`` counted as true and the caller waited in vain."""
    start_worker("-Q", queue_name)
    replies = unique_name("replies")
    amqp.queue_declare(replies, exclusive=True)
    amqp.basic_publish(
        "",
        queue_name,
        json.dumps([[2, 2], {}, None]).encode(),
        pika.BasicProperties(
            content_type="application/json",
            headers={"task": core.add.name, "id": "text-false", "ignore_result": "false"},
            correlation_id="text-false",
            reply_to=replies,
        ),
        mandatory=True,
    )
    reply = wait_for(lambda: amqp.basic_get(replies, auto_ack=True)[2], what="a reply")
    assert json.loads(reply)["result"] == 4


def _call(broker_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = ["python", "-m", "amqptasks", "call", "-A", "tests.integration.apps.core:app"]
    return subprocess.run(
        [*command, *args], env=cli_env(broker_url), capture_output=True, text=True, timeout=60
    )


def test_call_refuses_a_queue_nobody_knows_and_creates_nothing(
    broker_url: str, rabbit: Any, unique_name: Any
) -> None:
    typo = unique_name("typo")
    done = _call(broker_url, "tests.integration.apps.core.add", "--args", "[1, 2]", "-Q", typo)
    assert done.returncode == 1
    assert f"queue {typo!r} does not exist" in done.stderr
    assert "--create-queue" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    queues = rabbit.queue_depths()
    assert typo not in queues
    assert f"{typo}.dlq" not in queues


def test_call_wait_says_when_no_worker_consumes_the_queue(
    broker_url: str, queue_name: str, core: Any
) -> None:
    # A first call creates the queue (as the app declares it); nothing consumes it.
    assert _call(broker_url, core.add.name, "-Q", queue_name, "--create-queue").returncode == 0
    done = _call(
        broker_url, core.add.name, "--args", "[1, 2]", "-Q", queue_name, "--wait", "--timeout", "1"
    )
    assert done.returncode == 1  # nobody ran it: ResultTimeout
    warnings = [line for line in done.stderr.splitlines() if "no worker consumes" in line]
    assert len(warnings) == 1
    assert queue_name in warnings[0]
