"""amqptasks and the real Celery on the same broker and queues, in both directions.

One amqptasks worker and one Celery worker (``celery worker -P threads``) run per
serializer (json, msgpack) for the whole module; each test sends from one side to
the queue the other side consumes and checks the value, the failure, or what the
receiving worker saw of the call (id, root/parent ids, retries, reprs, headers).
Countdown/eta: Celery sends them straight to the queue with an ``eta`` header and
lets its worker hold them; amqptasks keeps them in the broker's delay levels. The
``countdown and eta`` tests check what each side's worker makes of the other's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import celery
import celery.exceptions
import pika
import pytest

from amqptasks import RemoteTaskError
from amqptasks.protocol.envelope import build_task_message, parse_task_message
from amqptasks.results.meta import decode_result
from amqptasks.topology import names
from tests.integration.celery_apps.common import Inventory, amqptasks_queue_arguments
from tests.integration.conftest import REPO, WorkerProcess, cli_env, wait_for, worker_command

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

AMQPTASKS_APP = "tests.integration.celery_apps.amqptasks_app"
CELERY_APP = "tests.integration.celery_apps.celery_app"
SERIALIZERS = ["json", "msgpack"]
CONTENT_TYPES = {"json": "application/json", "msgpack": "application/x-msgpack"}
ACCEPT = set(CONTENT_TYPES.values())
TIMEOUT = 20.0
#: countdown of the ETA tests; LATE: how long after its ETA a delayed task may start.
DELAY = 3
LATE = 1.5


# -- fixtures --------------------------------------------------------------------------------


def _import_app(module: str, broker_url: str) -> Any:
    # Both apps read AMQPTASKS_BROKER_URL when their module is first imported.
    os.environ["AMQPTASKS_BROKER_URL"] = broker_url
    return importlib.import_module(module)


@pytest.fixture(scope="module")
def capp(broker_url: str) -> Iterator[Any]:
    """The Celery app (producer side, in this process)."""
    app = _import_app(CELERY_APP, broker_url).app
    yield app
    app.close()


@pytest.fixture(scope="module")
def aapp(broker_url: str) -> Iterator[Any]:
    """The amqptasks app module (producer side, in this process)."""
    module = _import_app(AMQPTASKS_APP, broker_url)
    yield module
    module.app.close()


@dataclass
class Stack:
    """Both workers for one serializer, and where to find them."""

    serializer: str
    amqptasks_queue: str  # consumed by the amqptasks worker
    celery_queue: str  # consumed by the Celery worker
    tmp: Path

    def ledger(self) -> str:
        return str(self.tmp / f"ledger-{uuid.uuid4().hex[:8]}.json")


class CeleryWorker(WorkerProcess):
    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"celery worker exited with {self.proc.returncode}:\n{self.log()}"
                )
            time.sleep(0.1)
        raise AssertionError(f"celery worker not ready after {timeout}s:\n{self.log()}")


def _stop(worker: WorkerProcess) -> None:
    if worker.proc.poll() is None:
        worker.signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()


def _delete(broker_url: str, queues: list[str], exchanges: list[str]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        for queue in queues:
            channel.queue_delete(queue)
        for exchange in exchanges:
            channel.exchange_delete(exchange)
    finally:
        connection.close()


@pytest.fixture(scope="module", params=SERIALIZERS)
def stack(
    request: pytest.FixtureRequest, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    serializer = request.param
    tag = f"{serializer}-{uuid.uuid4().hex[:6]}"
    tmp = tmp_path_factory.mktemp(f"interop-{serializer}")
    stack = Stack(serializer, f"interop-amqptasks-{tag}", f"interop-celery-{tag}", tmp)
    env = cli_env(broker_url)
    env["AMQPTASKS_RESULT_SERIALIZER"] = serializer
    env["INTEROP_SERIALIZER"] = serializer
    logs = [tmp / "amqptasks-worker.log", tmp / "celery-worker.log"]
    celery_command = [sys.executable, "-m", "celery", "-A", CELERY_APP, "worker", "-P", "threads"]
    celery_command += ["-c", "2", "-Q", stack.celery_queue, "-n", f"interop-{tag}@%h", "-l", "info"]
    celery_command += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
    commands = [
        worker_command("-Q", stack.amqptasks_queue, "-c", "4", app=f"{AMQPTASKS_APP}:app"),
        celery_command,
    ]
    workers: list[WorkerProcess] = []
    try:
        kinds = (WorkerProcess, CeleryWorker)
        for kind, command, log_path in zip(kinds, commands, logs, strict=True):
            with log_path.open("wb") as log_file:
                proc = subprocess.Popen(
                    command, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT
                )
            workers.append(kind(proc, log_path, command))
        for worker in workers:  # both start at once; startup is the slow part
            worker.wait_ready()
        yield stack
    finally:
        for worker in workers:
            _stop(worker)
        queues = [stack.amqptasks_queue, stack.celery_queue]
        hops = [names.delay_hop_queue(names.DELAY_PREFIX, "", q) for q in queues]
        _delete(broker_url, [*queues, *(f"{q}.dlq" for q in queues), *hops], queues)


@pytest.fixture
def parked(broker_url: str, unique_name: Callable[[str], str]) -> Iterator[str]:
    """A queue declared like an amqptasks work queue (with its DLQ) that nobody consumes."""
    name = unique_name("interop-parked")
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.queue_declare(f"{name}.dlq", durable=True)
    channel.queue_declare(name, durable=True, arguments=amqptasks_queue_arguments(name))
    yield name
    for queue in (name, f"{name}.dlq"):
        channel.queue_delete(queue)
    channel.exchange_delete(name)
    connection.close()


def read_ledger(path: str) -> dict[str, Any]:
    wait_for(lambda: Path(path).exists(), timeout=TIMEOUT, what=f"ledger {path}")
    return json.loads(Path(path).read_text())  # type: ignore[no-any-return]


def get_raw(amqp: Any, queue: str, task_id: str | None = None) -> tuple[Any, bytes]:
    """basic_get the message of ``task_id`` (or the first one) from ``queue``, as an operator
    would, waiting for it to arrive; other messages on the way are consumed and dropped."""
    found: list[tuple[Any, bytes]] = []

    def fetch() -> bool:
        while not found:
            _method, properties, body = amqp.basic_get(queue, auto_ack=True)
            if properties is None:
                return False
            if task_id is None or (properties.headers or {}).get("id") == task_id:
                found.append((properties, body))
        return True

    wait_for(fetch, timeout=TIMEOUT, what=f"message {task_id or ''} in {queue}")
    return found[0]


def _parse(properties: Any, body: bytes) -> Any:
    return parse_task_message(
        body,
        headers=properties.headers,
        content_type=properties.content_type,
        accept_content=("json", "msgpack"),
        reply_to=properties.reply_to,
        correlation_id=properties.correlation_id,
    )


def _when(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _close_to_now_plus(text: str, seconds: float) -> bool:
    expected = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    return abs((_when(text) - expected).total_seconds()) < 15


def _level(level: int) -> str:
    """The queue of delay level ``level`` (which holds a message ``2**level`` s)."""
    return names.delay_level(names.DELAY_PREFIX, level)


def _ready(amqp: Any, queue: str) -> int:
    """Messages ready in ``queue`` (a passive declare: answered at once, unlike rabbitmqctl);
    0 while nobody has declared it (the delay levels are declared by their first use)."""
    channel = amqp.connection.channel()  # a 404 closes the channel it is asked on
    try:
        return int(channel.queue_declare(queue, passive=True).method.message_count)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 404:
            raise
        return 0
    finally:
        if channel.is_open:
            channel.close()


def _celery_received_at(stack: Stack, task_id: str) -> float:
    """When the Celery worker logged ``Task ...[task_id] received`` (its local time)."""
    marker = f"[{task_id}] received"
    log = (stack.tmp / "celery-worker.log").read_text(errors="replace")
    line = next(line for line in log.splitlines() if marker in line)
    stamp = line[1 : line.index(": ")]  # "[2026-01-02 03:04:05,678: INFO/MainProcess] ..."
    return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _wait_in_level_01(amqp: Any, count: int) -> None:
    """Wait until delay level 01 holds at least ``count`` messages (of a 3 s delay)."""
    wait_for(
        lambda: _ready(amqp, _level(1)) >= count,
        timeout=1.5,
        what=f"{count} message(s) in {_level(1)}",
    )


# -- Celery producer -> amqptasks worker ------------------------------------------------------


def test_celery_send_task_and_delay_run_on_amqptasks_worker(stack: Stack, capp: Any) -> None:
    options = {"queue": stack.amqptasks_queue, "serializer": stack.serializer}
    by_args = capp.send_task("interop.add", args=(2, 3), **options)
    by_kwargs = capp.send_task("interop.add", kwargs={"x": 40, "y": 2}, **options)
    by_delay = capp.tasks["interop.add"].s(20, 1).set(**options).delay()
    by_apply = capp.tasks["interop.add"].apply_async((1, 1), **options)
    zipped = capp.send_task("interop.add", args=(3, 4), compression="zlib", **options)
    bzipped = capp.send_task("interop.add", args=(5, 6), compression="bzip2", **options)
    assert by_args.get(timeout=TIMEOUT) == 5
    assert by_kwargs.get(timeout=TIMEOUT) == 42
    assert by_delay.get(timeout=TIMEOUT) == 21
    assert by_apply.get(timeout=TIMEOUT) == 2
    assert zipped.get(timeout=TIMEOUT) == 7
    assert bzipped.get(timeout=TIMEOUT) == 11
    members = [capp.tasks["interop.add"].s(i, i).set(**options) for i in range(3)]
    assert celery.group(members).apply_async().get(timeout=TIMEOUT) == [0, 2, 4]
    assert by_args.state == "SUCCESS"
    assert by_args.date_done is not None


def test_celery_sees_amqptasks_failure_as_its_own_exception(stack: Stack, capp: Any) -> None:
    result = capp.send_task(
        "interop.fail",
        args=("disk full",),
        queue=stack.amqptasks_queue,
        serializer=stack.serializer,
    )
    with pytest.raises(ValueError) as caught:
        result.get(timeout=TIMEOUT)
    assert type(caught.value) is ValueError
    assert caught.value.args == ("disk full",)
    assert result.state == "FAILURE"
    assert "raise ValueError(message)" in result.traceback

    nested = capp.send_task(
        "interop.fail_nested",
        args=("A-1",),
        queue=stack.amqptasks_queue,
        serializer=stack.serializer,
    )
    with pytest.raises(Inventory.OutOfStock, match="out of stock: A-1"):
        nested.get(timeout=TIMEOUT)


def test_unknown_task_on_amqptasks_worker_is_dead_lettered_and_reported(
    stack: Stack, capp: Any, amqp: Any
) -> None:
    """A Celery worker answers an unregistered task with NotRegistered; an amqptasks worker
    dead-letters it with the reason and replies FAILURE, so the Celery caller learns why."""
    result = capp.send_task(
        "interop.nope", args=(1,), queue=stack.amqptasks_queue, serializer=stack.serializer
    )
    properties, _body = get_raw(amqp, f"{stack.amqptasks_queue}.dlq", result.id)
    assert properties.headers["x-amqptasks-reason"] == "unknown-task"
    with pytest.raises(Exception, match=r"no task registered as 'interop\.nope'") as caught:
        result.get(timeout=TIMEOUT)
    assert type(caught.value).__name__ == "UnknownTask"


def test_celery_call_options_reach_amqptasks_worker(stack: Stack, capp: Any) -> None:
    result = capp.send_task(
        "interop.info",
        args=(1, "two"),
        kwargs={"three": 3},
        queue=stack.amqptasks_queue,
        serializer=stack.serializer,
        expires=300,
        priority=5,
        headers={"x-tenant": "acme"},
        retries=2,
    )
    seen = result.get(timeout=TIMEOUT)
    assert seen["side"] == "amqptasks"
    assert seen["id"] == result.id
    assert seen["task"] == "interop.info"
    assert seen["root_id"] == result.id
    assert seen["parent_id"] is None
    assert seen["retries"] == 2
    assert seen["argsrepr"] == "(1, 'two')"
    assert seen["kwargsrepr"] == "{'three': 3}"
    assert _close_to_now_plus(seen["expires"], 300)
    assert seen["eta"] is None
    assert seen["tenant"] == "acme"
    assert seen["args"] == [1, "two"]
    assert seen["kwargs"] == {"three": 3}


def test_lineage_celery_root_through_amqptasks_worker_to_celery_worker(
    stack: Stack, capp: Any
) -> None:
    """Celery producer -> amqptasks ``spawn`` -> Celery worker: root and parent ids carry over."""
    ledger = stack.ledger()
    spawn = capp.send_task(
        "interop.spawn",
        args=(stack.celery_queue, ledger, stack.serializer),
        queue=stack.amqptasks_queue,
        serializer=stack.serializer,
        root_id="root-of-everything",
        parent_id="some-parent",
    )
    child_id = spawn.get(timeout=TIMEOUT)
    child = read_ledger(ledger)
    assert child["side"] == "celery"
    assert child["id"] == child_id
    assert child["parent_id"] == spawn.id
    assert child["root_id"] == "root-of-everything"
    assert child["retries"] == 0
    assert child["argsrepr"] == "('child',)"
    assert child["args"] == ["child"]


def test_celery_expires_is_a_message_ttl_dead_lettered_on_an_amqptasks_queue(
    stack: Stack, capp: Any, amqp: Any, parked: str
) -> None:
    """Celery also sets the AMQP ``expiration`` property from ``expires``: unconsumed, the
    broker dead-letters the message into the queue's DLQ (amqptasks' ``<queue>.dlq``)."""
    result = capp.send_task(
        "interop.add", args=(1, 2), queue=parked, expires=0.5, serializer=stack.serializer
    )
    properties, body = get_raw(amqp, f"{parked}.dlq", result.id)
    death = properties.headers["x-death"][0]
    assert death["reason"] == "expired"
    assert death["queue"] == parked
    assert _parse(properties, body).args == [1, 2]


# -- amqptasks producer -> Celery worker ------------------------------------------------------


def test_amqptasks_producer_runs_tasks_on_celery_worker(stack: Stack, aapp: Any) -> None:
    options = {"queue": stack.celery_queue, "serializer": stack.serializer}
    assert aapp.add.apply_async((2, 3), **options).get(timeout=TIMEOUT) == 5
    for method in ("zlib", "bz2", "lzma"):
        result = aapp.add.apply_async((3, 4), compression=method, **options)
        assert result.get(timeout=TIMEOUT) == 7, method
    assert aapp.add.apply_async(kwargs={"x": 40, "y": 2}, **options).get(timeout=TIMEOUT) == 42
    assert aapp.app.send_task("interop.add", (20, 1), **options).get(timeout=TIMEOUT) == 21

    async def send_async() -> Any:
        try:
            result = await aapp.add.aapply_async((7, 8), **options)
            return await result.aget(timeout=TIMEOUT)
        finally:
            await aapp.app.aclose()

    assert asyncio.run(send_async()) == 15


def test_amqptasks_sees_celery_failure_as_its_own_exception(stack: Stack, aapp: Any) -> None:
    result = aapp.fail.apply_async(
        ("disk full",), queue=stack.celery_queue, serializer=stack.serializer
    )
    with pytest.raises(ValueError) as caught:
        result.get(timeout=TIMEOUT)
    assert type(caught.value) is ValueError
    assert caught.value.args == ("disk full",)
    assert result.state == "FAILURE"
    assert "raise ValueError(message)" in caught.value.remote_traceback  # type: ignore[attr-defined]

    nested = aapp.app.send_task(
        "interop.fail_nested", ("A-1",), queue=stack.celery_queue, serializer=stack.serializer
    )
    with pytest.raises(Inventory.OutOfStock, match="out of stock: A-1"):
        nested.get(timeout=TIMEOUT)


def test_unknown_task_on_celery_worker_fails_and_lands_in_the_dlq(
    stack: Stack, aapp: Any, amqp: Any
) -> None:
    """The Celery worker replies NotRegistered and rejects the message, which the queue's
    amqptasks dead-letter arguments route into ``<queue>.dlq`` (Celery alone would drop it)."""
    result = aapp.app.send_task(
        "interop.nope", (1,), queue=stack.celery_queue, serializer=stack.serializer
    )
    with pytest.raises(celery.exceptions.NotRegistered):
        result.get(timeout=TIMEOUT)
    properties, _body = get_raw(amqp, f"{stack.celery_queue}.dlq", result.id)
    assert properties.headers["x-death"][0]["reason"] == "rejected"


def test_amqptasks_call_options_reach_celery_worker(stack: Stack, aapp: Any) -> None:
    result = aapp.info.apply_async(
        (1, "two"),
        {"three": 3},
        queue=stack.celery_queue,
        serializer=stack.serializer,
        expires=300,
        priority=5,
        headers={"x-tenant": "acme"},
    )
    seen = result.get(timeout=TIMEOUT)
    assert seen["side"] == "celery"
    assert seen["id"] == result.id
    assert seen["task"] == "interop.info"
    assert seen["root_id"] == result.id
    assert seen["parent_id"] is None
    assert seen["retries"] == 0
    assert seen["argsrepr"] == "(1, 'two')"
    assert seen["kwargsrepr"] == "{'three': 3}"
    assert _close_to_now_plus(seen["expires"], 300)
    assert seen["eta"] is None
    assert seen["timelimit"] == [None, None]
    assert seen["priority"] == 5
    assert seen["tenant"] == "acme"
    assert seen["args"] == [1, "two"]
    assert seen["kwargs"] == {"three": 3}


def test_expired_amqptasks_message_is_revoked_by_celery_worker(stack: Stack, aapp: Any) -> None:
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    result = aapp.add.apply_async(
        (1, 1), queue=stack.celery_queue, expires=past, serializer=stack.serializer
    )
    with pytest.raises(Exception) as caught:  # Celery's type; checked below
        result.get(timeout=TIMEOUT)
    assert result.state == "REVOKED"
    # celery.exceptions is imported here, so the type is rebuilt; elsewhere it would be a
    # RemoteTaskError with exc_type "TaskRevokedError".
    assert type(caught.value).__name__ == "TaskRevokedError"
    assert not isinstance(caught.value, RemoteTaskError)


def test_lineage_amqptasks_root_through_celery_worker_to_amqptasks_worker(
    stack: Stack, aapp: Any
) -> None:
    """amqptasks producer -> Celery ``spawn`` -> amqptasks worker."""
    ledger = stack.ledger()
    spawn = aapp.spawn.apply_async(
        (stack.amqptasks_queue, ledger, stack.serializer),
        queue=stack.celery_queue,
        serializer=stack.serializer,
    )
    child_id = spawn.get(timeout=TIMEOUT)
    child = read_ledger(ledger)
    assert child["side"] == "amqptasks"
    assert child["id"] == child_id
    assert child["parent_id"] == spawn.id
    assert child["root_id"] == spawn.id
    assert child["retries"] == 0
    assert child["argsrepr"] == "('child',)"
    assert child["args"] == ["child"]
    assert child["kwargs"] == {}


def test_celery_retry_into_amqptasks_queue_keeps_id_retries_and_reply(
    stack: Stack, aapp: Any
) -> None:
    """A Celery worker retries a task into a queue an amqptasks worker consumes: the second
    attempt runs there with ``retries == 1`` under the same id, and its result reaches the
    original amqptasks caller."""
    result = aapp.flaky.apply_async(
        (stack.amqptasks_queue,), queue=stack.celery_queue, serializer=stack.serializer
    )
    seen = result.get(timeout=TIMEOUT)
    assert (seen["side"], seen["id"], seen["retries"], seen["eta"]) == (
        "amqptasks",
        result.id,
        1,
        None,
    )


# -- countdown and eta ----------------------------------------------------------------------------
# A 3 s delay waits 2 s in delay level 01, then 1 s in level 00. The tests wait until
# level 01 holds the message (passive declares: answered at once), then count the work
# queue's ready and unacked messages (`rabbitmqctl list_queues`, which takes about a
# second) - all before the message can be due.


def test_celery_countdown_and_eta_wait_in_the_delay_levels_not_the_amqptasks_worker(
    stack: Stack, capp: Any, rabbit: Any, amqp: Any
) -> None:
    """Celery publishes countdown/eta tasks straight to the queue; the amqptasks worker hands
    them to the broker's delay levels (acking them) and runs them when they come back due."""
    clock = capp.tasks["interop.clock"]
    options = {"queue": stack.amqptasks_queue, "serializer": stack.serializer}
    sent = time.time()
    by_countdown = clock.apply_async(("countdown",), countdown=DELAY, **options)
    eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=DELAY)
    by_eta = clock.apply_async(("eta",), eta=eta, **options)
    sent_by = time.time()
    _wait_in_level_01(amqp, 2)
    assert rabbit.queue_depths()[stack.amqptasks_queue] == (0, 0)  # nothing ready or held
    assert time.time() < sent + DELAY  # (the counts were read before the tasks were due)
    first = by_countdown.get(timeout=TIMEOUT)
    second = by_eta.get(timeout=TIMEOUT)
    assert (first["side"], first["label"], first["id"]) == (
        "amqptasks",
        "countdown",
        by_countdown.id,
    )
    assert (second["side"], second["label"], second["id"]) == ("amqptasks", "eta", by_eta.id)
    # countdown: Celery's eta is its clock at the call + 3 s, somewhere in [sent, sent_by] + 3 s
    assert sent + DELAY <= first["ran_at"] < sent_by + DELAY + LATE
    assert eta.timestamp() <= second["ran_at"] < eta.timestamp() + LATE
    # The worker republished the message with the eta it came with (to within clock reads).
    assert abs(_when(second["eta"]).timestamp() - eta.timestamp()) < 0.25
    assert sent + DELAY <= _when(first["eta"]).timestamp() < sent_by + DELAY + 0.25
    assert by_countdown.state == by_eta.state == "SUCCESS"


def test_amqptasks_countdown_reaches_the_celery_queue_only_when_due(
    stack: Stack, aapp: Any, rabbit: Any, amqp: Any
) -> None:
    """An amqptasks countdown waits in the delay levels, not in the Celery queue or worker;
    it reaches the queue when due with its ``eta`` then past, and Celery runs it at once."""
    sent = time.time()
    result = aapp.clock.apply_async(
        ("countdown",), queue=stack.celery_queue, serializer=stack.serializer, countdown=DELAY
    )
    _wait_in_level_01(amqp, 1)
    assert rabbit.queue_depths()[stack.celery_queue] == (0, 0)  # not ready, not held by Celery
    assert time.time() < sent + DELAY
    seen = result.get(timeout=TIMEOUT)
    assert (seen["side"], seen["label"], seen["id"]) == ("celery", "countdown", result.id)
    eta = _when(seen["eta"]).timestamp()
    assert sent + DELAY <= eta < time.time()
    # The Celery worker received it no earlier than its eta, and ran it at once.
    received = _celery_received_at(stack, result.id)
    assert eta - 0.01 <= received <= seen["ran_at"]  # (the log has millisecond timestamps)
    assert eta <= seen["ran_at"] < eta + LATE


def test_celery_retry_with_countdown_into_amqptasks_queue_waits_in_the_delay_levels(
    stack: Stack, aapp: Any, rabbit: Any, amqp: Any
) -> None:
    """A Celery worker retries with a countdown into an amqptasks queue: Celery sends the
    retry at once with an ``eta`` header; the amqptasks worker delays it in the broker."""
    sent = time.time()
    result = aapp.flaky.apply_async(
        (stack.amqptasks_queue, DELAY), queue=stack.celery_queue, serializer=stack.serializer
    )
    _wait_in_level_01(amqp, 1)
    assert rabbit.queue_depths()[stack.amqptasks_queue] == (0, 0)
    assert time.time() < sent + DELAY
    seen = result.get(timeout=TIMEOUT)
    assert (seen["side"], seen["id"], seen["retries"]) == ("amqptasks", result.id, 1)
    eta = _when(seen["eta"]).timestamp()
    assert sent + DELAY <= eta
    assert eta <= seen["ran_at"] < eta + LATE


# -- the raw messages, as an operator reads them -----------------------------------------------


def test_celery_message_parses_as_amqptasks_message(
    stack: Stack, capp: Any, amqp: Any, parked: str
) -> None:
    result = capp.send_task(
        "interop.info",
        args=(1, "two"),
        kwargs={"three": 3},
        queue=parked,
        serializer=stack.serializer,
        expires=300,
        priority=7,
        retries=3,
        time_limit=30,
        soft_time_limit=10,
        root_id="r-1",
        parent_id="p-1",
        headers={"x-tenant": "acme"},
    )
    properties, body = get_raw(amqp, parked, result.id)
    assert properties.content_type == CONTENT_TYPES[stack.serializer]
    assert properties.correlation_id == result.id
    assert properties.priority == 7
    assert properties.delivery_mode == 2
    parsed = _parse(properties, body)
    assert (parsed.task, parsed.id) == ("interop.info", result.id)
    assert (parsed.root_id, parsed.parent_id, parsed.retries) == ("r-1", "p-1", 3)
    assert parsed.args == [1, "two"]
    assert parsed.kwargs == {"three": 3}
    assert parsed.timelimit == (10, 30)  # (soft, hard); Celery writes [hard, soft]
    assert parsed.reply_to == capp.thread_oid
    assert _close_to_now_plus(str(parsed.expires), 300)
    assert parsed.headers["x-tenant"] == "acme"
    assert set(parsed.embed) == {"callbacks", "errbacks", "chain", "chord"}


def test_amqptasks_message_has_every_header_celery_writes(
    stack: Stack, capp: Any, aapp: Any, amqp: Any, parked: str
) -> None:
    from kombu.serialization import loads

    sent = aapp.info.apply_async(
        (1, "two"), {"three": 3}, queue=parked, serializer=stack.serializer, priority=7, expires=300
    )
    ours, our_body = get_raw(amqp, parked, sent.id)
    theirs_sent = capp.send_task(
        "interop.info",
        args=(1, "two"),
        kwargs={"three": 3},
        queue=parked,
        serializer=stack.serializer,
        priority=7,
        expires=300,
    )
    theirs, their_body = get_raw(amqp, parked, theirs_sent.id)
    celery_only = {"replaced_task_nesting", "stamped_headers", "stamps"}
    assert set(theirs.headers) - celery_only <= set(ours.headers)
    for name in ("content_type", "content_encoding", "delivery_mode", "priority"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.correlation_id == ours.headers["id"]
    decoded = loads(our_body, ours.content_type, ours.content_encoding, accept=ACCEPT)
    assert decoded == loads(their_body, theirs.content_type, theirs.content_encoding, accept=ACCEPT)


def test_amqptasks_built_retries_and_time_limits_read_by_celery_worker(
    stack: Stack, amqp: Any
) -> None:
    """What a future amqptasks retry or time limit writes, a Celery worker reads the same."""
    ledger = stack.ledger()
    message = build_task_message(
        task="interop.info",
        task_id=str(uuid.uuid4()),
        args=["x"],
        kwargs={"ledger": ledger},
        exchange="",
        routing_key=stack.celery_queue,
        serializer=stack.serializer,
        root_id="r-2",
        parent_id="p-2",
        retries=4,
        timelimit=(10, 30),  # ints: pika cannot encode float header values
        ignore_result=True,
    )
    amqp.basic_publish(
        message.exchange,
        message.routing_key,
        message.body,
        pika.BasicProperties(
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            headers=message.headers,
            correlation_id=message.correlation_id,
            message_id=message.message_id,
            delivery_mode=message.delivery_mode,
        ),
        mandatory=True,
    )
    seen = read_ledger(ledger)
    assert seen["side"] == "celery"
    assert seen["id"] == message.headers["id"]
    assert (seen["root_id"], seen["parent_id"], seen["retries"]) == ("r-2", "p-2", 4)
    assert seen["timelimit"] == [30, 10]  # Celery's order: [hard, soft]
    assert seen["args"] == ["x"]


def test_celery_reply_decodes_as_amqptasks_result(stack: Stack, amqp: Any) -> None:
    """A Celery worker's rpc reply, read raw from a reply queue, is an amqptasks result."""
    reply_queue = f"interop-replies-{uuid.uuid4().hex[:8]}"
    amqp.queue_declare(reply_queue, durable=True, arguments={"x-expires": 60_000})
    try:
        message = build_task_message(
            task="interop.fail",
            task_id=str(uuid.uuid4()),
            args=["boom"],
            kwargs={},
            exchange="",
            routing_key=stack.celery_queue,
            serializer=stack.serializer,
            reply_to=reply_queue,
        )
        amqp.basic_publish(
            message.exchange,
            message.routing_key,
            message.body,
            pika.BasicProperties(
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                headers=message.headers,
                correlation_id=message.correlation_id,
                reply_to=reply_queue,
                delivery_mode=2,
            ),
        )
        properties, body = get_raw(amqp, reply_queue)
    finally:
        amqp.queue_delete(reply_queue)
    assert properties.correlation_id == message.headers["id"]
    assert properties.content_type == CONTENT_TYPES[stack.serializer]
    from kombu.serialization import loads

    meta = decode_result(
        loads(body, properties.content_type, properties.content_encoding, accept=ACCEPT)
    )
    assert meta.task_id == message.headers["id"]
    assert meta.status == "FAILURE"
    assert meta.result == {
        "exc_type": "ValueError",
        "exc_message": ["boom"],
        "exc_module": "builtins",
    }
    assert meta.date_done


# -- known differences ----------------------------------------------------------------------------


def test_json_typed_values_from_celery(stack: Stack, capp: Any) -> None:
    """kombu's json sends datetime/date/time/Decimal/UUID/bytes as typed values that a
    Celery worker turns back into those types; an amqptasks task should get them too."""
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    result = capp.send_task(
        "interop.info", args=(when,), queue=stack.amqptasks_queue, serializer="json"
    )
    seen = result.get(timeout=TIMEOUT)
    assert seen["arg_types"] == ["datetime"]


def test_a_chord_made_by_celery_is_kept_whole_in_the_dlq_not_half_run(
    stack: Stack, amqp: Any, parked: str
) -> None:
    """Celery joins chords in its result store, which amqptasks has not: a member of a
    Celery chord (``chord`` in the embed, no broker-held join) is dead-lettered untouched
    rather than run with its part lost (#15; chains and callbacks do run, see
    test_workflows_celery)."""
    body = {
        "task": "interop.add",
        "args": [],
        "kwargs": {},
        "options": {"queue": parked},
        "subtask_type": None,
        "immutable": False,
        "chord_size": 2,
    }
    task_id = str(uuid.uuid4())
    message = build_task_message(
        task="interop.add",
        task_id=task_id,
        args=(1, 2),
        kwargs={},
        exchange="",
        routing_key=stack.amqptasks_queue,
        group=str(uuid.uuid4()),
        embed={"chord": body},
    )
    amqp.basic_publish(
        "",
        stack.amqptasks_queue,
        message.body,
        pika.BasicProperties(
            headers=message.headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            correlation_id=task_id,
            delivery_mode=2,
        ),
    )
    properties, _body = get_raw(amqp, f"{stack.amqptasks_queue}.dlq", task_id)
    assert properties.headers["x-amqptasks-reason"] == "unsupported-workflow"
    method, _properties, _body = amqp.basic_get(parked, auto_ack=True)
    assert method is None  # no body was sent
