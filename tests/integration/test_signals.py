"""Signals fire in a real worker and around real publishes; a broken receiver is not fatal."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Any

import pytest

from amqptasks import RemoteTaskError, signals
from tests.integration.conftest import lines, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    import pika

    from tests.integration.conftest import WorkerProcess

HOOKED_APP = "tests.integration.apps.hooked:app"


def test_worker_and_task_signals(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    tmp_path: Path,
) -> None:
    hook_log = tmp_path / "hooks"
    ledger = tmp_path / "ledger"
    worker = start_worker(
        "-Q",
        queue_name,
        "-c",
        "1",
        "-n",
        "hooked@%h",
        app=HOOKED_APP,
        env={"AMQPTASKS_TEST_HOOK_LOG": str(hook_log)},
    )
    ok = core.add.apply_async((1, 2), queue=queue_name)
    assert ok.get(timeout=20) == 3  # the broken task_prerun receiver did not matter
    failed = core.fail.apply_async(("boom",), queue=queue_name)
    with pytest.raises((ValueError, RemoteTaskError)):
        failed.get(timeout=20)
    retried = core.flaky.apply_async((str(ledger), "f", 1), queue=queue_name)
    assert retried.get(timeout=30) == 1
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0

    got = lines(hook_log)
    assert got[0].startswith("worker_ready hooked@") and got[0].endswith(queue_name)
    assert got[-1] == "worker_shutdown 0"
    add, fail, flaky = (
        "tests.integration.apps.core.add",
        "tests.integration.apps.core.fail",
        ("tests.integration.apps.core.flaky"),
    )
    assert [line for line in got if ok.id in line] == [
        f"task_prerun {add} {ok.id}",
        f"task_postrun {add} {ok.id} SUCCESS",
        f"task_success {add} {ok.id}",
    ]
    assert [line for line in got if failed.id in line] == [
        f"task_prerun {fail} {failed.id}",
        f"task_postrun {fail} {failed.id} FAILURE",
        f"task_failure {fail} {failed.id} ValueError",
    ]
    assert [line for line in got if retried.id in line] == [
        f"task_prerun {flaky} {retried.id}",
        f"task_postrun {flaky} {retried.id} FAILURE",
        f"task_retry {flaky} {retried.id} 1",
        f"task_prerun {flaky} {retried.id}",
        f"task_postrun {flaky} {retried.id} SUCCESS",
        f"task_success {flaky} {retried.id}",
    ]
    log = worker.log()
    assert log.count("signal receiver failed") == 4  # one error line per prerun, not fatal
    assert "a broken hook" in log


@pytest.fixture
def publish_calls() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    calls: list[tuple[str, dict[str, Any]]] = []

    def before(sender: Any, headers: dict[str, Any], **kwargs: Any) -> None:
        headers["x-hooked"] = "yes"
        calls.append(("before", {"sender": sender, **kwargs}))

    def after(sender: Any, **kwargs: Any) -> None:
        calls.append(("after", {"sender": sender, **kwargs}))

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("broken publish hook")

    signals.before_publish.connect(before)
    signals.before_publish.connect(broken)
    signals.after_publish.connect(after, sender="tests.integration.apps.core.add")
    yield calls
    signals.before_publish.disconnect(before)
    signals.before_publish.disconnect(broken)
    signals.after_publish.disconnect(after, sender="tests.integration.apps.core.add")


def _headers(channel: Any, queue: str) -> list[dict[str, Any]]:
    found = []
    while True:
        method, properties, _body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return found
        found.append(dict(properties.headers or {}))


def test_publish_signals_sync_async_and_batch(
    core: Any,
    publish_calls: list[tuple[str, dict[str, Any]]],
    queue_name: str,
    amqp: pika.adapters.blocking_connection.BlockingChannel,
) -> None:
    add = "tests.integration.apps.core.add"
    first = core.add.apply_async((1, 1), queue=queue_name, ignore_result=True)

    async def send() -> str:
        try:
            result = await core.add.aapply_async((2, 2), queue=queue_name, ignore_result=True)
            return result.id
        finally:
            await core.app.aclose()

    second = asyncio.run(send())
    with core.app.batch():
        third = core.add.apply_async((3, 3), queue=queue_name, ignore_result=True)
        other = core.fail.apply_async(("x",), queue=queue_name, ignore_result=True)

    befores = [c for kind, c in publish_calls if kind == "before"]
    afters = [c for kind, c in publish_calls if kind == "after"]
    assert [c["task_id"] for c in befores] == [first.id, second, third.id, other.id]
    assert all(c["routing_key"] == queue_name for c in befores)
    assert befores[0]["sender"] == add
    # after_publish: confirmed ones only, and only for the sender asked for.
    assert [c["task_id"] for c in afters] == [first.id, second, third.id]
    wait_for(lambda: amqp.queue_declare(queue_name, passive=True).method.message_count == 4)
    headers = _headers(amqp, queue_name)
    assert [h["x-hooked"] for h in headers] == ["yes"] * 4  # a receiver may add headers
