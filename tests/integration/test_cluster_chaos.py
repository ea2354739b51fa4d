"""Chaos on a 3-node cluster (#19): a steady stream of tasks through four node faults.

A producer publishes ``RATE`` tasks a second with confirms (each with a task id it
chose, so an unconfirmed one is known too) to a quorum queue; a worker runs them.
Both are given the cluster's three URLs: the producer node 3 first, the worker node 1
first, and the queue is declared (so led) by the producer, on node 3. Then, one at a
time, each fault followed by the cluster's repair:

1. ``kill -9`` of the node the worker consumes from, then that node started again;
2. ``kill -9`` of the node leading the quorum queue, then started again;
3. ``SIGSTOP`` of the worker's node for longer than two heartbeats, then ``SIGCONT``;
4. the whole cluster restarted one node at a time (``rabbitmqctl stop``, start).

Delivery is at least once, so a task can run twice: a task that finished while its
node died is redelivered (its ack died with the connection), and a publish whose
confirm was lost is sent again under the same id. A side effect that must happen
once is the task's to guard, as ``tests.integration.apps.cluster.record`` does with
its task id (what a user's task does with a unique key); the test counts the raw
executions (``re-runs``) separately from the side effects (``duplicates``).

Asserted: every confirmed task ran (``lost`` = 0); each side effect exactly once per
task id (``duplicates`` = 0); no task ran twice without a fault (baseline); nothing
left ready or unacked, and the dead-letter queue empty. Printed per fault (``-s``):
tasks, longest pause in task completion, re-runs, duplicates, lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from amqptasks import App
from amqptasks.exceptions import AmqptasksError
from amqptasks.testing import RabbitCluster
from tests.integration.apps.cluster import SETTINGS, create_ledger
from tests.integration.conftest import REPO, cli_env, wait_for, worker_command

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from amqptasks.testing import RabbitNode

CLUSTER_APP = "tests.integration.apps.cluster:app"
TASK = "cluster.record"
ECHO = "cluster.echo"
HEARTBEAT = 5
#: Tasks published per second.
RATE = 40
#: How long a fault's effects may take to be repaired (every confirmed task done).
CATCH_UP = 60.0
PRODUCER_SETTINGS = {
    **SETTINGS,
    # Keep trying through a failover (a new leader is elected within seconds).
    "publish_retry_max_retries": 60,
    "publish_retry_interval_start": 0.1,
    "publish_retry_interval_step": 0.2,
    "publish_retry_interval_max": 1.0,
    "publish_timeout": 10.0,
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    broker = os.environ.get("AMQPTASKS_TEST_BROKER") or "system"
    with RabbitCluster(nodes=3, broker=broker) as started:
        yield started


def _with_heartbeat(url: str) -> str:
    return f"{url}?heartbeat={HEARTBEAT}&connect_timeout=3"


@dataclass
class Stream:
    """The producer: ``RATE`` confirmed publishes a second, each tagged with the phase."""

    app: App
    db: str
    queue: str
    phase: str = "baseline"
    confirmed: dict[str, str] = field(default_factory=dict)
    unconfirmed: dict[str, str] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        number = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            phase, task_id = self.phase, str(uuid.uuid4())
            number += 1
            try:
                self.app.send_task(
                    TASK, (self.db, f"{phase}:{number}"), queue=self.queue, task_id=task_id
                )
            except AmqptasksError:
                self.unconfirmed[task_id] = phase
            else:
                self.confirmed[task_id] = phase
            next_at = max(next_at + 1 / RATE, time.monotonic() - 1)
            self.stop.wait(max(0.0, next_at - time.monotonic()))


def _rows(db: str, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(db, timeout=60)
    try:
        return list(connection.execute(sql))
    finally:
        connection.close()


def _done_ids(db: str) -> set[str]:
    return {str(row[0]) for row in _rows(db, "SELECT task_id FROM effects")}


def _connected_node(cluster: RabbitCluster, connection_name: str) -> RabbitNode:
    """The node holding the connection called ``connection_name`` (the worker's consumer)."""
    out = cluster.ctl("list_connections", "-q", "--formatter", "json", "name", "client_properties")
    wanted = json.dumps(connection_name)
    for row in json.loads(out):
        if wanted in json.dumps(row.get("client_properties")):
            port = int(str(row["name"]).rpartition(":")[2])
            return cluster.node_on_port(port)
    raise AssertionError(f"no connection named {connection_name!r}: {out}")


def _producer(url: str) -> App:
    """The producer app, on ``url`` (set in the environment, which wins over arguments)."""
    before = os.environ.get("AMQPTASKS_BROKER_URL")
    os.environ["AMQPTASKS_BROKER_URL"] = url
    try:
        producer = App("cluster", **PRODUCER_SETTINGS)
    finally:
        if before is None:
            del os.environ["AMQPTASKS_BROKER_URL"]
        else:
            os.environ["AMQPTASKS_BROKER_URL"] = before
    assert producer.settings.broker_url == url
    return producer


def _start_worker(url: str, queue: str, hostname: str, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            worker_command("-Q", queue, "-c", "4", "-n", hostname, app=CLUSTER_APP),
            cwd=REPO,
            env=cli_env(url),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()


def _longest_pause(times: list[float], start: float, end: float) -> float:
    """The longest wait between task completions within [start, end]."""
    marks = [start, *(t for t in times if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(marks))


@pytest.mark.timeout(420)  # with the cluster's start (about 40 s) and stop
def test_tasks_survive_node_kills_a_frozen_node_and_a_rolling_restart(
    cluster: RabbitCluster, tmp_path: Path
) -> None:
    db = str(tmp_path / "ledger.sqlite")
    create_ledger(db)
    queue = f"chaos-{uuid.uuid4().hex[:8]}"
    urls = [_with_heartbeat(url) for url in cluster.amqp_urls]
    worker_url = ";".join(urls)
    producer_url = ";".join([urls[2], urls[0], urls[1]])
    n1, _n2, n3 = cluster.nodes

    producer = _producer(producer_url)
    stream = Stream(producer, db, queue)
    publisher = threading.Thread(target=stream.run, name="chaos-publisher", daemon=True)

    log_path = tmp_path / "worker.log"
    hostname = "chaos@localhost"
    worker = _start_worker(worker_url, queue, hostname, log_path)
    phases: list[tuple[str, float, float]] = []
    try:
        # The producer declares the queue: on node 3, which so leads it.
        producer.send_task(TASK, (db, "warm-up"), queue=queue)
        assert cluster.queue_leader(queue) is n3
        wait_for(lambda: "worker ready" in log_path.read_text(), 40, "the worker")
        assert _connected_node(cluster, f"amqptasks worker {hostname}") is n1
        publisher.start()

        def catch_up(what: str) -> None:
            wanted = set(stream.confirmed)
            wait_for(lambda: wanted <= _done_ids(db), CATCH_UP, f"the tasks confirmed {what}")

        def phase(name: str, fault: Callable[[], None]) -> None:
            stream.phase = name
            start = time.time()
            fault()
            catch_up(f"by the end of {name}")
            time.sleep(1.0)  # a second of steady flow closes the phase
            phases.append((name, start, time.time()))

        phase("baseline", lambda: time.sleep(3.0))

        def kill_the_workers_node() -> None:
            victim = _connected_node(cluster, f"amqptasks worker {hostname}")
            victim.kill()
            catch_up("while a node is dead")
            victim.start()

        def kill_the_leader() -> None:
            leader = cluster.queue_leader(queue)
            leader.kill()
            catch_up("while the leader is dead")
            leader.start()

        def freeze_the_workers_node() -> None:
            victim = _connected_node(cluster, f"amqptasks worker {hostname}")
            victim.signal(signal.SIGSTOP)
            try:
                time.sleep(2 * HEARTBEAT + 2)
            finally:
                victim.signal(signal.SIGCONT)

        def rolling_restart() -> None:
            for node in cluster.nodes:
                node.stop()
                node.start()

        phase("kill -9 worker's node", kill_the_workers_node)
        phase("kill -9 queue leader", kill_the_leader)
        phase(f"SIGSTOP worker's node {2 * HEARTBEAT + 2}s", freeze_the_workers_node)
        phase("rolling restart", rolling_restart)
        stream.stop.set()
        publisher.join(60)
        catch_up("in all")
        wait_for(
            lambda: cluster.queue_depths().get(queue) == (0, 0),
            30,
            "nothing ready or unacked",
        )
        depths = cluster.queue_depths()
    finally:
        stream.stop.set()
        _stop_worker(worker)
        producer.close()
        for node in cluster.nodes:  # leave no node frozen or down for the next test
            with contextlib.suppress(RuntimeError):
                node.signal(signal.SIGCONT)

    attempts = _rows(db, "SELECT task_id, token, redelivered, at FROM attempts")
    effects = _rows(db, "SELECT task_id, token, at FROM effects")
    effect_count: dict[str, int] = {}
    for task_id, _token, _at in effects:
        effect_count[str(task_id)] = effect_count.get(str(task_id), 0) + 1
    attempt_count: dict[str, int] = {}
    for task_id, _token, _redelivered, _at in attempts:
        attempt_count[str(task_id)] = attempt_count.get(str(task_id), 0) + 1
    done_at = sorted(float(str(at)) for _id, _token, at in effects)

    lines = [
        f"cluster chaos: {len(stream.confirmed)} tasks confirmed, "
        f"{len(stream.unconfirmed)} not confirmed, heartbeat {HEARTBEAT}s, {RATE} tasks/s",
        f"{'fault':<28} {'tasks':>6} {'longest pause':>14} {'re-runs':>8} "
        f"{'duplicates':>10} {'lost':>5}",
    ]
    totals = {"lost": 0, "duplicates": 0}
    for name, start, end in phases:
        ids = [task_id for task_id, phase in stream.confirmed.items() if phase == name]
        lost = sum(1 for task_id in ids if task_id not in effect_count)
        duplicates = sum(
            effect_count.get(task_id, 0) - 1 for task_id in ids if task_id in effect_count
        )
        reruns = sum(attempt_count.get(task_id, 1) - 1 for task_id in ids)
        totals["lost"] += lost
        totals["duplicates"] += duplicates
        pause = _longest_pause(done_at, start, end)
        lines.append(
            f"{name:<28} {len(ids):>6} {pause:>13.2f}s {reruns:>8} {duplicates:>10} {lost:>5}"
        )
        if name == "baseline":
            assert reruns == 0, "a task ran twice with no fault"
    print("\n" + "\n".join(lines))

    assert totals == {"lost": 0, "duplicates": 0}
    assert all(count == 1 for count in effect_count.values())
    assert set(stream.confirmed) <= set(effect_count)
    assert depths.get(queue) == (0, 0)
    assert depths.get(f"{queue}.dlq", (0, 0)) == (0, 0)


@pytest.mark.timeout(240)
def test_producers_publish_on_while_their_reply_queues_node_is_down(
    cluster: RabbitCluster, tmp_path: Path
) -> None:
    """Reply queues are classic queues, on the node the producer first used (node 3).

    While that node is down the producers (sync and async) still publish, and the
    tasks run; once it is back, they consume their reply queues again and get results.
    """
    db = str(tmp_path / "ledger.sqlite")
    create_ledger(db)
    queue = f"replies-{uuid.uuid4().hex[:8]}"
    urls = [_with_heartbeat(url) for url in cluster.amqp_urls]
    producer = _producer(";".join([urls[2], urls[0], urls[1]]))
    worker = _start_worker(";".join(urls), queue, "replies@localhost", tmp_path / "worker.log")
    n3 = cluster.nodes[2]

    async def scenario() -> None:
        assert await (await producer.asend_task(ECHO, (1,), queue=queue)).aget(timeout=40) == 1
        synced = producer.send_task(ECHO, (2,), queue=queue)
        assert await asyncio.to_thread(synced.get, timeout=30) == 2

        n3.kill()
        await asyncio.to_thread(producer.send_task, TASK, (db, "sync"), queue=queue)
        await producer.asend_task(TASK, (db, "async"), queue=queue)
        await asyncio.to_thread(
            wait_for, lambda: len(_done_ids(db)) == 2, 30, "the tasks sent while node 3 is down"
        )

        await asyncio.to_thread(n3.start)
        synced = producer.send_task(ECHO, (3,), queue=queue)
        assert await asyncio.to_thread(synced.get, timeout=30) == 3
        assert await (await producer.asend_task(ECHO, (4,), queue=queue)).aget(timeout=30) == 4
        await producer.aclose()

    try:
        asyncio.run(scenario())
    finally:
        _stop_worker(worker)
        producer.close()
        with contextlib.suppress(RuntimeError):  # leave every node up for the next test
            if not n3.started:
                n3.start()
