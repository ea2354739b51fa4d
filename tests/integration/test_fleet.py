"""Operating a fleet with the real tools: Flower, ``celery inspect|control``, Prometheus' parser.

One amqptasks worker (``-E --control --metrics-port 0``) runs for the module; the
real Flower and Celery command line (installed by the test command) talk to it
over the session broker.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from amqptasks.control.client import Control
from amqptasks.control.sent import send_sent_events
from tests.integration.conftest import REPO, WorkerProcess, cli_env, lines, wait_for
from tests.integration.test_celery_interop import CeleryWorker

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CELERY_APP = "tests.integration.celery_apps.celery_app"
TIMEOUT = 30.0


@dataclass
class Fleet:
    worker: WorkerProcess
    hostname: str
    queue: str
    metrics_port: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _celery(broker_url: str, *args: str, timeout: float = 60.0) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", CELERY_APP, *args],
        cwd=REPO,
        env=cli_env(broker_url),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


def _celery_json(broker_url: str, *args: str) -> dict[str, Any]:
    out = _celery(broker_url, *args, "--json")
    start = out.find("{")
    assert start >= 0, out
    decoded, _end = json.JSONDecoder().raw_decode(out[start:])
    assert isinstance(decoded, dict)
    return decoded


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@contextlib.contextmanager
def fleet_worker(broker_url: str, tmp: Path) -> Iterator[Fleet]:
    """An amqptasks worker with ``-E --control --metrics-port 0`` on a queue of its own."""
    queue = f"fleet-{uuid.uuid4().hex[:6]}"
    hostname = f"fleet-{uuid.uuid4().hex[:6]}@localhost"
    log_path = tmp / "worker.log"
    command = [sys.executable, "-m", "amqptasks", "worker", "-A", "tests.integration.apps.core:app"]
    command += ["-l", "info", "-Q", queue, "-c", "4", "--hostname", hostname]
    command += ["-E", "--control", "--metrics-port", "0"]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            command, cwd=REPO, env=cli_env(broker_url), stdout=log_file, stderr=subprocess.STDOUT
        )
    worker = WorkerProcess(proc, log_path, command)
    try:
        worker.wait_ready()
        served = [line for line in worker.log().splitlines() if "metrics served" in line]
        port = int(served[0].split("port=")[1].split()[0])
        yield Fleet(worker, hostname, queue, port)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def fleet(broker_url: str, core: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with fleet_worker(broker_url, tmp_path_factory.mktemp("fleet")) as running:
        yield running


@pytest.fixture(scope="module")
def flower(
    broker_url: str, fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Real Flower, its HTTP API's base URL; it has seen the worker's heartbeat."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("flower") / "flower.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", CELERY_APP, "flower", f"--port={port}"],
            cwd=REPO,
            # Flower 2 serves its HTTP API without authentication only when told to.
            env={**cli_env(broker_url), "FLOWER_UNAUTHENTICATED_API": "true"},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def alive() -> bool:
        try:
            status = _get(f"{base}/api/workers?status=true")
        except OSError:
            return False
        return bool(status.get(fleet.hostname))

    try:
        wait_for(alive, timeout=60, what="Flower to see the worker's heartbeat")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_flower_lists_the_worker_and_its_tasks_with_their_states(
    flower: str, fleet: Fleet, core: Any, tmp_path: Path
) -> None:
    ledger = str(tmp_path / "ledger")
    sent = send_sent_events(core.app)
    try:
        ok = core.add.apply_async((2, 3), queue=fleet.queue)
    finally:
        sent.disconnect()
    bad = core.fail.apply_async(("boom",), queue=fleet.queue)
    flaky = core.flaky.apply_async((ledger, "f", 1), queue=fleet.queue)
    assert ok.get(timeout=TIMEOUT) == 5
    with pytest.raises(ValueError, match="boom"):
        bad.get(timeout=TIMEOUT)
    assert flaky.get(timeout=TIMEOUT) == 1

    def settled() -> dict[str, Any] | None:
        tasks = _get(f"{flower}/api/tasks")
        wanted = {ok.id: "SUCCESS", bad.id: "FAILURE", flaky.id: "SUCCESS"}
        if all(tasks.get(i, {}).get("state") == s for i, s in wanted.items()):
            return dict(tasks)
        return None

    tasks = wait_for(settled, timeout=TIMEOUT, what="Flower to show the final states")
    assert tasks[ok.id]["name"] == core.add.name
    assert tasks[ok.id]["worker"] == fleet.hostname
    assert tasks[ok.id]["result"] == "5"
    assert tasks[ok.id]["sent"] is not None  # task-sent from the producer
    assert tasks[ok.id]["routing_key"] == fleet.queue
    assert "boom" in tasks[bad.id]["exception"]
    assert tasks[flaky.id]["retries"] == 1  # the retried attempt was received again
    workers = _get(f"{flower}/api/workers?refresh=1")
    assert fleet.hostname in workers
    assert workers[fleet.hostname]["stats"]["pool"]["max-concurrency"] == 4
    assert core.add.name in workers[fleet.hostname]["registered"]


def test_celery_inspect_ping_and_active_alone_and_beside_a_celery_worker(
    broker_url: str, fleet: Fleet, core: Any, tmp_path: Path
) -> None:
    pong = _celery_json(broker_url, "inspect", "ping", "-d", fleet.hostname)
    assert pong == {fleet.hostname: {"ok": "pong"}}
    ledger = str(tmp_path / "slow")
    slow = core.slow.apply_async((ledger, "s", 8.0), queue=fleet.queue)
    wait_for(lambda: lines(Path(ledger)), timeout=TIMEOUT, what="the slow task to start")
    active = _celery_json(broker_url, "inspect", "active", "-d", fleet.hostname)
    running = active[fleet.hostname]
    assert [(t["id"], t["name"]) for t in running] == [(slow.id, core.slow.name)]
    assert running[0]["time_start"] is not None

    celery_name = f"celery-{uuid.uuid4().hex[:6]}@localhost"
    log_path = tmp_path / "celery.log"
    command = [sys.executable, "-m", "celery", "-A", CELERY_APP, "worker", "-P", "threads"]
    command += ["-c", "1", "-Q", f"fleet-celery-{uuid.uuid4().hex[:6]}", "-n", celery_name]
    command += ["--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "info"]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            command, cwd=REPO, env=cli_env(broker_url), stdout=log_file, stderr=subprocess.STDOUT
        )
    celery_worker = CeleryWorker(proc, log_path, command)
    try:
        celery_worker.wait_ready()
        both = [fleet.hostname, celery_name]
        pongs = _celery_json(broker_url, "inspect", "ping", "-d", ",".join(both))
        assert pongs == {name: {"ok": "pong"} for name in both}
        active = _celery_json(broker_url, "inspect", "active", "-d", ",".join(both))
        assert active[celery_name] == []
        assert [t["id"] for t in active[fleet.hostname]] == [slow.id]
    finally:
        proc.terminate()
        proc.wait(30)
    assert slow.get(timeout=TIMEOUT) == "s"


def test_control_rate_limit_changes_a_running_workers_rate(
    broker_url: str, fleet: Fleet, core: Any, tmp_path: Path
) -> None:
    out = _celery(broker_url, "control", "rate_limit", core.stamp.name, "2/s", "-d", fleet.hostname)
    assert "new rate limit set successfully" in out, out
    ledger = tmp_path / "stamps"
    results = [core.stamp.apply_async((str(ledger), str(i)), queue=fleet.queue) for i in range(4)]
    times = sorted(r.get(timeout=TIMEOUT) for r in results)
    # 2/s: four calls start at least 0.5 s apart each (the first at once).
    assert times[-1] - times[0] >= 1.4, times
    out = _celery(broker_url, "control", "rate_limit", core.stamp.name, "0", "-d", fleet.hostname)
    assert "rate limit disabled successfully" in out, out


def test_metrics_parse_and_count_the_tasks_run(fleet: Fleet, core: Any) -> None:
    def count(task: str, state: str) -> float:
        key = ("amqptasks_tasks_total", (("state", state), ("task", task)))
        return _metrics(fleet.metrics_port).get(key, 0.0)

    before = {s: count(core.add.name, s) for s in ("succeeded", "failed")}
    failed_before = count(core.fail.name, "failed")
    for result in [core.add.apply_async((i, i), queue=fleet.queue) for i in range(5)]:
        result.get(timeout=TIMEOUT)
    for result in [core.fail.apply_async(("m",), queue=fleet.queue) for _ in range(2)]:
        with pytest.raises(ValueError):
            result.get(timeout=TIMEOUT)
    wait_for(lambda: count(core.fail.name, "failed") == failed_before + 2, what="metrics")
    assert count(core.add.name, "succeeded") == before["succeeded"] + 5
    assert count(core.add.name, "failed") == before["failed"]
    samples = _metrics(fleet.metrics_port)
    runtime_count = samples[("amqptasks_task_runtime_seconds_count", (("task", core.add.name),))]
    assert runtime_count >= 5
    reason = (("reason", "failed"), ("task", core.fail.name))
    assert samples[("amqptasks_dead_letters_total", reason)] >= 2

    def queue_gauges() -> tuple[float, float] | None:
        found = _metrics(fleet.metrics_port)
        consumers = found.get(("amqptasks_queue_consumers", (("queue", fleet.queue),)))
        dead = found.get(("amqptasks_queue_messages", (("queue", f"{fleet.queue}.dlq"),)))
        if consumers is None or dead is None or dead < 2:
            return None
        return consumers, dead

    consumers, _dead = wait_for(queue_gauges, timeout=40, what="queue depths in the metrics")
    assert consumers == 1
    assert ("amqptasks_delay_messages", ()) in _metrics(fleet.metrics_port)


def test_metrics_alone_time_each_call_it_runs(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    unique_name: Callable[[str], str],
) -> None:
    # No -E and no other hook as calls start: the pool's start time is enough.
    queue = unique_name("metrics-alone")
    worker = start_worker("-Q", queue, "--metrics-port", "0")
    served = [line for line in worker.log().splitlines() if "metrics served" in line]
    port = int(served[0].split("port=")[1].split()[0])
    for result in [core.add.apply_async((i, 1), queue=queue) for i in range(3)]:
        result.get(timeout=TIMEOUT)
    task = (("task", core.add.name),)

    def counted() -> dict[str, float] | None:
        samples = _metrics(port)
        found = {
            name: samples.get((f"amqptasks_task_{name}_seconds_count", task), 0.0)
            for name in ("runtime", "queue_wait")
        }
        return found if all(count == 3 for count in found.values()) else None

    found = wait_for(counted, timeout=10, what="runtime and queue wait of 3 calls")
    assert found == {"runtime": 3.0, "queue_wait": 3.0}


def test_a_revoke_made_while_no_worker_runs_holds_when_workers_start(
    broker_url: str,
    core: Any,
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
    unique_name: Callable[[str], str],
) -> None:
    queue = unique_name("revoked")
    ledger = tmp_path / "ledger"
    # Declared by a first worker, then nobody consumes the queue.
    first = start_worker("-Q", queue, "--control")
    first.signal(15)
    assert first.wait(30) == 0
    waiting = core.stamp.apply_async((str(ledger), "queued"), queue=queue)
    delayed = core.stamp.apply_async((str(ledger), "delayed"), queue=queue, countdown=3)
    with Control(core.app.settings.broker) as control:
        control.revoke([waiting.id, delayed.id])
    time.sleep(0.5)
    start_worker("-Q", queue, "--control")
    marker = core.stamp.apply_async((str(ledger), "marker"), queue=queue, countdown=5)
    marker.get(timeout=TIMEOUT)
    ran = [line.split()[0] for line in lines(ledger)]
    assert ran == ["marker"]
    wait_for(lambda: waiting.state == "REVOKED", timeout=TIMEOUT, what="waiting revoked")
    wait_for(lambda: delayed.state == "REVOKED", timeout=TIMEOUT, what="delayed revoked")


def _amqptasks(broker_url: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "amqptasks", *args, "-A", "tests.integration.apps.core:app"],
        cwd=REPO,
        env=cli_env(broker_url),
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


def test_amqptasks_inspect_and_control_add_and_cancel_a_consumer(
    broker_url: str, fleet: Fleet, core: Any, unique_name: Callable[[str], str]
) -> None:
    registered = json.loads(
        _amqptasks(broker_url, "inspect", "registered", "-d", fleet.hostname, "--json")
    )
    assert core.add.name in registered[fleet.hostname]
    extra = unique_name("fleet-extra")
    out = _amqptasks(broker_url, "control", "add_consumer", extra, "-d", fleet.hostname)
    assert f"add consumer {extra}" in out, out
    queues = json.loads(
        _amqptasks(broker_url, "inspect", "active_queues", "-d", fleet.hostname, "--json")
    )
    assert {q["name"] for q in queues[fleet.hostname]} == {fleet.queue, extra}
    assert core.add.apply_async((20, 22), queue=extra).get(timeout=TIMEOUT) == 42
    out = _amqptasks(broker_url, "control", "cancel_consumer", extra, "-d", fleet.hostname)
    assert f"no longer consuming from {extra}" in out, out
    queues = json.loads(
        _amqptasks(broker_url, "inspect", "active_queues", "-d", fleet.hostname, "--json")
    )
    assert [q["name"] for q in queues[fleet.hostname]] == [fleet.queue]


def test_celery_control_revoke_skips_a_call_waiting_in_the_delay_levels(
    broker_url: str, fleet: Fleet, core: Any, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    delayed = core.stamp.apply_async((str(ledger), "delayed"), queue=fleet.queue, countdown=3)
    out = _celery(broker_url, "control", "revoke", delayed.id, "-d", fleet.hostname)
    assert "flagged as revoked" in out, out
    revoked = _celery_json(broker_url, "inspect", "revoked", "-d", fleet.hostname)
    assert delayed.id in revoked[fleet.hostname]
    wait_for(lambda: delayed.state == "REVOKED", timeout=TIMEOUT, what="the call skipped")
    assert lines(ledger) == []


def test_amqptasks_events_shows_workers_states_failures_and_queues(
    broker_url: str, fleet: Fleet, core: Any
) -> None:
    command = [sys.executable, "-m", "amqptasks", "events", "-A", "tests.integration.apps.core:app"]
    command += ["-Q", fleet.queue, "--duration", "5"]
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env={**cli_env(broker_url), "COLUMNS": "160"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    assert "listening" in proc.stderr.readline().decode()
    core.add.apply_async((1, 1), queue=fleet.queue).get(timeout=TIMEOUT)
    with pytest.raises(ValueError):
        core.fail.apply_async(("dashboard-boom",), queue=fleet.queue).get(timeout=TIMEOUT)
    out, _err = proc.communicate(timeout=60)
    last = out.decode(errors="replace")
    assert fleet.hostname in last
    assert "dashboard-boom" in last
    assert f"{fleet.queue}.dlq" in last


def test_amqptasks_status_and_purge(
    broker_url: str, fleet: Fleet, core: Any, unique_name: Callable[[str], str]
) -> None:
    out = _amqptasks(broker_url, "status")
    assert f"-> {fleet.hostname}: OK" in out, out
    parked = unique_name("fleet-parked")
    for i in range(2):
        core.add.apply_async((i, i), queue=parked)
    assert f"purged 2 message(s) from {parked}" in _amqptasks(broker_url, "purge", parked, "-f")
    missing = _amqptasks(broker_url, "purge", f"{parked}-missing", "-f")
    assert "NOT_FOUND" in missing and "Traceback" not in missing, missing


def test_revoke_with_terminate_stops_a_call_running_in_a_pool_process(
    broker_env: str,
    core: Any,
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
    unique_name: Callable[[str], str],
) -> None:
    queue = unique_name("terminate")
    hostname = f"terminate-{uuid.uuid4().hex[:6]}@localhost"
    start_worker("-Q", queue, "-P", "processes", "-c", "1", "--control", "--hostname", hostname)
    ledger = tmp_path / "ledger"
    running = core.slow.apply_async((str(ledger), "t", 60.0), queue=queue)
    wait_for(lambda: lines(ledger), timeout=TIMEOUT, what="the call to start")
    capp = importlib.import_module(CELERY_APP).app
    with capp.connection_for_write() as connection:  # not a pooled one an earlier test left idle
        replies = capp.control.revoke(
            running.id, destination=[hostname], terminate=True, reply=True, connection=connection
        )
    assert replies == [{hostname: {"ok": f"terminate: {running.id}"}}]
    wait_for(lambda: running.state == "REVOKED", timeout=TIMEOUT, what="the call revoked")
    assert core.add.apply_async((1, 2), queue=queue).get(timeout=TIMEOUT) == 3  # a new child
    assert lines(ledger) == ["start t"]
