"""A task goes from a producer (sync or async) to a worker and its result comes back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from amqptasks import ConfigError, RemoteTaskError, states
from tests.integration.conftest import CORE_APP, cli_env, lines, wait_for

if TYPE_CHECKING:
    from pathlib import Path

TRANSPORTS = ["sync", "async"]


def send(task: Any, transport: str, *args: Any, **options: Any) -> Any:
    """Send through the sync (pika) or the async (aio-pika) producer; return the value."""
    if transport == "sync":
        return task.apply_async(args, **options).get(timeout=20)

    async def run() -> Any:
        result = await task.aapply_async(args, **options)
        try:
            return await result.aget(timeout=20)
        finally:
            await task.app.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_round_trip(core: Any, start_worker: Any, queue_name: str, transport: str) -> None:
    start_worker("-Q", queue_name, "-c", "2")
    assert send(core.add, transport, 2, 3, queue=queue_name) == 5
    assert send(core.async_add, transport, 20, 22, queue=queue_name) == 42


@pytest.mark.parametrize("serializer", ["json", "msgpack", "yaml"])
@pytest.mark.parametrize("compression", [None, "zlib", "bz2", "lzma"])
def test_serializers_and_compression(
    core: Any, start_worker: Any, queue_name: str, serializer: str, compression: str | None
) -> None:
    start_worker("-Q", queue_name, "-c", "2")
    options: dict[str, Any] = {"queue": queue_name, "serializer": serializer}
    if compression:
        options["compression"] = compression
    result = core.record.apply_async(("/dev/null", "x" * 5000), **options)
    assert result.get(timeout=20) == "x" * 5000


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exception_is_reraised_with_type_message_and_remote_traceback(
    core: Any, start_worker: Any, queue_name: str, transport: str
) -> None:
    start_worker("-Q", queue_name)
    with pytest.raises(ValueError, match="disk full") as caught:
        send(core.fail, transport, "disk full", queue=queue_name)
    remote = caught.value.remote_traceback  # type: ignore[attr-defined]
    assert "raise ValueError(message)" in remote
    assert "in fail" in remote


def test_user_exception_type_is_rebuilt(core: Any, start_worker: Any, queue_name: str) -> None:
    start_worker("-Q", queue_name)
    with pytest.raises(core.InventoryError, match="out of stock: A-1"):
        core.fail_custom.apply_async(("A-1",), queue=queue_name).get(timeout=20)


def test_propagate_false_returns_the_exception(
    core: Any, start_worker: Any, queue_name: str
) -> None:
    start_worker("-Q", queue_name)
    result = core.fail.apply_async(("nope",), queue=queue_name)
    value = result.get(timeout=20, propagate=False)
    assert isinstance(value, ValueError)
    assert str(value) == "nope"
    assert result.state == states.FAILURE
    assert result.failed() and not result.successful() and result.ready()
    assert "ValueError: nope" in (result.traceback or "")


def test_ignore_result_sends_nothing_back(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path
) -> None:
    start_worker("-Q", queue_name)
    marker = tmp_path / "touched"
    result = core.touch.apply_async((str(marker),), queue=queue_name)
    wait_for(marker.exists, what="the task to run")
    # A reply would arrive right after the task; give it time, then check none came.
    follow_up = core.add.apply_async((1, 1), queue=queue_name)
    assert follow_up.get(timeout=20) == 2
    assert core.app.results.peek(result.id) is None
    with pytest.raises(ConfigError, match="ignore_result"):
        result.get(timeout=1)
    # and a task that normally replies can be told not to:
    silent = core.add.apply_async((5, 5), queue=queue_name, ignore_result=True)
    assert core.add.apply_async((0, 1), queue=queue_name).get(timeout=20) == 1
    assert core.app.results.peek(silent.id) is None


def test_bound_task_sees_its_request(core: Any, start_worker: Any, queue_name: str) -> None:
    start_worker("-Q", queue_name, "-n", "alpha@%h")
    result = core.whoami.apply_async(queue=queue_name, task_id="my-fixed-id")
    info = result.get(timeout=20)
    assert info["id"] == "my-fixed-id"
    assert info["queue"] == queue_name
    assert info["hostname"].startswith("alpha@")
    assert info["retries"] == 0


def test_unknown_remote_exception_type_keeps_its_name(core: Any) -> None:
    from amqptasks.results.meta import rebuild_exception

    exc = rebuild_exception(
        {"exc_type": "GoneError", "exc_module": "not.imported.mod", "exc_message": ["bye"]}, "tb"
    )
    assert isinstance(exc, RemoteTaskError) and exc.exc_type == "GoneError"


def test_thousand_tasks_from_eight_threads_run_exactly_once(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path
) -> None:
    start_worker("-Q", queue_name, "-c", "8")
    ledger = tmp_path / "ledger"
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def produce(thread_no: int) -> None:
        try:
            for i in range(125):
                r = core.record.apply_async((str(ledger), f"{thread_no}-{i}"), queue=queue_name)
                with lock:
                    results.append(r)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({r.id for r in results}) == 1000
    values = [r.get(timeout=60) for r in results]
    assert len(set(values)) == 1000
    counts = Counter(lines(ledger))
    assert len(counts) == 1000
    assert set(counts.values()) == {1}


def test_batch_publishes_and_every_task_runs(
    core: Any, start_worker: Any, queue_name: str, tmp_path: Path
) -> None:
    start_worker("-Q", queue_name, "-c", "4")
    ledger = tmp_path / "ledger"
    with core.app.batch():
        results = [
            core.record.apply_async((str(ledger), str(i)), queue=queue_name) for i in range(2000)
        ]
    assert sorted(int(r.get(timeout=60)) for r in results) == list(range(2000))
    assert sorted(int(x) for x in lines(ledger)) == list(range(2000))


def test_nested_call_carries_root_and_parent_ids(
    core: Any, start_worker: Any, queue_name: str, amqp: Any, unique_name: Any
) -> None:
    start_worker("-Q", queue_name)
    side = unique_name("side")
    try:
        parent = core.spawn_child.apply_async((4, side), queue=queue_name)
        child_id = parent.get(timeout=20)
        method, properties, _body = wait_for(lambda: _get(amqp, side), what="the child message")
        assert properties.headers["id"] == child_id
        assert properties.headers["parent_id"] == parent.id
        assert properties.headers["root_id"] == parent.id
        amqp.basic_ack(method.delivery_tag)
    finally:
        amqp.queue_delete(side)
        amqp.queue_delete(side + ".dlq")


def _get(channel: Any, queue: str) -> Any:
    method, properties, body = channel.basic_get(queue)
    return (method, properties, body) if method is not None else None


def test_cli_call_waits_for_the_result(
    core: Any, start_worker: Any, queue_name: str, broker_url: str
) -> None:
    start_worker("-Q", queue_name)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "amqptasks",
            "call",
            "-A",
            CORE_APP,
            "tests.integration.apps.core.add",
            "--args",
            "[2, 3]",
            "-Q",
            queue_name,
            "--wait",
        ],
        env=cli_env(broker_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"
    failed = subprocess.run(
        [
            sys.executable,
            "-m",
            "amqptasks",
            "call",
            "-A",
            CORE_APP,
            "tests.integration.apps.core.fail",
            "--args",
            '["broken"]',
            "-Q",
            queue_name,
            "--wait",
        ],
        env=cli_env(broker_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 1
    assert "FAILURE" in failed.stderr and "ValueError: broken" in failed.stderr
