"""Bad input gets a clear error and loses nothing."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from typing import Any

import pika
import pytest

from amqptasks import (
    App,
    AuthenticationFailed,
    BatchPublishError,
    BrokerUnreachable,
    NotFound,
    TaskError,
    Unroutable,
    states,
)
from tests.integration.conftest import CORE_APP, cli_env, wait_for, worker_command


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dlq_messages(channel: Any, queue: str, expected: int) -> list[tuple[Any, bytes]]:
    got: list[tuple[Any, bytes]] = []

    def fetch() -> bool:
        method, properties, body = channel.basic_get(f"{queue}.dlq", auto_ack=True)
        if method is not None:
            got.append((properties, body))
        return len(got) >= expected

    wait_for(fetch, what=f"{expected} message(s) in {queue}.dlq")
    return got


def _publish_raw(
    channel: Any,
    queue: str,
    body: bytes,
    headers: dict[str, Any],
    content_type: str = "application/json",
) -> None:
    channel.basic_publish(
        "",
        queue,
        body,
        pika.BasicProperties(
            content_type=content_type,
            content_encoding="utf-8",
            headers=headers,
            delivery_mode=2,
            correlation_id=headers.get("id"),
            message_id=headers.get("id"),
        ),
        mandatory=True,
    )


def test_unknown_task_and_bad_body_go_to_the_dlq_and_the_worker_lives_on(
    core: Any, start_worker: Any, queue_name: str, amqp: Any, rabbit: Any
) -> None:
    worker = start_worker("-Q", queue_name)
    core.app.send_task("proj.no_such_task", [1], queue=queue_name, ignore_result=True)
    _publish_raw(amqp, queue_name, b"{not json", {"task": core.add.name, "id": "bad-json-1"})
    _publish_raw(amqp, queue_name, b'"just a string"', {"task": core.add.name, "id": "bad-2"})
    dead = _dlq_messages(amqp, queue_name, 3)
    by_reason: dict[str, list[Any]] = {}
    for properties, body in dead:
        by_reason.setdefault(properties.headers["x-amqptasks-reason"], []).append(
            (properties, body)
        )
    assert len(by_reason["unknown-task"]) == 1
    unknown_props, unknown_body = by_reason["unknown-task"][0]
    assert "proj.no_such_task" in unknown_props.headers["x-amqptasks-error"]
    assert unknown_props.headers["task"] == "proj.no_such_task"
    assert json.loads(unknown_body)[0] == [1]  # the body is kept as it was
    assert unknown_props.headers["x-amqptasks-original-routing-key"] == queue_name
    assert unknown_props.headers["x-amqptasks-worker"].startswith("worker@")
    assert len(by_reason["decode-error"]) == 2
    assert {body for _p, body in by_reason["decode-error"]} == {b"{not json", b'"just a string"'}
    # nothing left behind, nothing unacked, and the worker still works
    assert core.add.apply_async((1, 2), queue=queue_name).get(timeout=20) == 3
    assert worker.proc.poll() is None
    ready, unacked = rabbit.queue_depths()[queue_name]
    assert (ready, unacked) == (0, 0)


def test_pickle_is_refused_unless_enabled(
    core: Any, start_worker: Any, queue_name: str, amqp: Any
) -> None:
    import pickle

    start_worker("-Q", queue_name)
    body = pickle.dumps([[1, 2], {}, {}])
    _publish_raw(
        amqp,
        queue_name,
        body,
        {"task": core.add.name, "id": "pickled-1"},
        content_type="application/x-python-serialize",
    )
    ((properties, raw),) = _dlq_messages(amqp, queue_name, 1)
    assert properties.headers["x-amqptasks-reason"] == "decode-error"
    assert "accept_content" in properties.headers["x-amqptasks-error"]
    assert raw == body


@pytest.mark.parametrize("transport", ["sync", "async"])
def test_wrong_password_is_a_clear_error_quickly(
    broker_url: str, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = broker_url.replace("guest:guest@", "guest:Sup3rS3cret@")
    monkeypatch.setenv("AMQPTASKS_BROKER_URL", bad)  # as an operator would configure it
    app = App("badpw")
    task = app.task(lambda: None, name="noop")
    started = time.monotonic()
    with pytest.raises(AuthenticationFailed) as caught:
        if transport == "sync":
            task.delay()
        else:
            asyncio.run(task.adelay())
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "refused the login" in message and "'guest'" in message
    assert "Sup3rS3cret" not in message
    app.close()


@pytest.mark.parametrize("transport", ["sync", "async"])
def test_closed_port_is_a_clear_error_quickly(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AMQPTASKS_BROKER_URL", raising=False)
    port = _free_port()
    app = App("closed", broker_url=f"amqp://guest:Sup3rS3cret@127.0.0.1:{port}//")
    task = app.task(lambda: None, name="noop")
    started = time.monotonic()
    with pytest.raises(BrokerUnreachable) as caught:
        if transport == "sync":
            task.delay()
        else:
            asyncio.run(task.adelay())
    assert time.monotonic() - started < 10
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "Sup3rS3cret" not in str(caught.value)
    app.close()


def test_worker_with_wrong_password_exits_with_one_line(broker_url: str) -> None:
    bad = broker_url.replace("guest:guest@", "guest:Sup3rS3cret@")
    env = cli_env(bad)
    started = time.monotonic()
    done = subprocess.run(
        worker_command("-Q", "never"), env=env, capture_output=True, text=True, timeout=30
    )
    assert time.monotonic() - started < 15
    assert done.returncode == 1
    assert "AuthenticationFailed" in done.stderr
    assert "Sup3rS3cret" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_unroutable_publish_raises_naming_exchange_and_key(core: Any) -> None:
    with pytest.raises(Unroutable) as caught:
        core.add.apply_async((1, 2), exchange="amq.direct", routing_key="nobody-listens")
    assert caught.value.exchange == "amq.direct"
    assert caught.value.routing_key == "nobody-listens"
    assert "amq.direct" in str(caught.value) and "nobody-listens" in str(caught.value)

    async def run() -> None:
        try:
            with pytest.raises(Unroutable, match="nobody-listens"):
                await core.add.aapply_async(
                    (1, 2), exchange="amq.direct", routing_key="nobody-listens"
                )
        finally:
            await core.app.aclose()

    asyncio.run(run())


def test_missing_exchange_is_not_found_and_the_producer_recovers(
    core: Any, start_worker: Any, queue_name: str
) -> None:
    start_worker("-Q", queue_name)
    with pytest.raises(NotFound, match="no-such-exchange"):
        core.add.apply_async((1, 2), exchange="no-such-exchange", routing_key="x")
    assert core.add.apply_async((1, 2), queue=queue_name).get(timeout=20) == 3


def test_batch_reports_each_unconfirmed_message(
    core: Any, start_worker: Any, queue_name: str
) -> None:
    start_worker("-Q", queue_name)
    with pytest.raises(BatchPublishError) as caught, core.app.batch():
        good = core.add.apply_async((1, 1), queue=queue_name)
        core.add.apply_async((1, 1), exchange="amq.direct", routing_key="nobody-listens")
        core.add.apply_async((2, 2), exchange="amq.direct", routing_key="nobody-listens")
    assert len(caught.value.failures) == 2
    assert all(isinstance(f, Unroutable) for f in caught.value.failures)
    assert good.get(timeout=20) == 2


def test_queue_with_other_arguments_is_reported_not_crashed(
    core: Any, queue_name: str, amqp: Any, broker_url: str
) -> None:
    amqp.queue_declare(queue_name, durable=True, arguments={"x-max-length": 10})
    done = subprocess.run(
        worker_command("-Q", queue_name),
        env=cli_env(broker_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "TopologyMismatch" in done.stderr
    assert queue_name in done.stderr
    assert "x-dead-letter-exchange" in done.stderr  # what we wanted
    # the producer can still publish into the operator's queue
    core.add.apply_async((1, 1), queue=queue_name, ignore_result=True)
    wait_for(
        lambda: amqp.queue_declare(queue_name, passive=True).method.message_count == 1,
        what="the message in the operator's queue",
    )


def test_expired_task_is_not_run_and_reported_revoked(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Any
) -> None:
    ledger = tmp_path / "ledger"
    result = core.record.apply_async((str(ledger), "late"), queue=queue_name, expires=0.2)
    time.sleep(0.5)
    start_worker("-Q", queue_name)
    with pytest.raises(TaskError, match="expired"):
        result.get(timeout=20)
    assert result.state == states.REVOKED
    assert not ledger.exists()
    fresh = core.record.apply_async((str(ledger), "on-time"), queue=queue_name, expires=60)
    assert fresh.get(timeout=20) == "on-time"


def test_cli_reports_bad_arguments_without_a_traceback(broker_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "amqptasks", "call", "-A", CORE_APP, "x", "--args", "{oops"],
        env=cli_env(broker_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--args" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "amqptasks", "worker", "-A", "no.such.module:app"],
        env=cli_env(broker_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "cannot import" in done.stderr
