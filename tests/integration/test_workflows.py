"""Workflows on a real node (#15): chain, group and chord, with workers killed mid-chord.

Two ``amqptasks worker`` processes consume one queue for the whole module; side
effects (chord bodies, error callbacks) are lines in files, counted afterwards.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import uuid
from typing import TYPE_CHECKING, Any

import pika
import pytest

from amqptasks import ChordError, chain, chord, group
from amqptasks.topology import names
from tests.integration.conftest import (
    REPO,
    WorkerProcess,
    cli_env,
    dlq_headers,
    wait_for,
    worker_command,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

APP = "tests.integration.apps.workflows:app"
TIMEOUT = 60.0


class Fleet:
    def __init__(self, queue: str, env: dict[str, str], tmp: Path) -> None:
        self.queue = queue
        self.env = env
        self.tmp = tmp
        self.workers: list[WorkerProcess] = []

    def start(self) -> WorkerProcess:
        log_path = self.tmp / f"worker-{len(self.workers)}.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                worker_command("-Q", self.queue, "-c", "4", app=APP),
                cwd=REPO,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(proc, log_path)
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()


@pytest.fixture(scope="module")
def flows(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    queue = f"iflow-{uuid.uuid4().hex[:8]}"
    os.environ["AMQPTASKS_BROKER_URL"] = broker_url
    os.environ["WORKFLOW_QUEUE"] = queue
    module = importlib.import_module("tests.integration.apps.workflows")
    assert module.app.settings.default_queue == queue
    env = {**cli_env(broker_url), "WORKFLOW_QUEUE": queue}
    fleet = Fleet(queue, env, tmp_path_factory.mktemp("flows"))
    first, second = fleet.start(), fleet.start()
    first.wait_ready()
    second.wait_ready()
    module.fleet = fleet
    yield module
    module.app.close()
    fleet.stop()
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    for name in (queue, f"{queue}.dlq", names.delay_hop_queue(names.DELAY_PREFIX, "", queue)):
        channel.queue_delete(name)
    connection.close()


def _lines(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _chord_queues_exist(broker_url: str, chord_id: str) -> list[str]:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    found = []
    try:
        for name in (names.chord_results(chord_id), names.chord_token(chord_id)):
            channel = connection.channel()
            try:
                channel.queue_declare(name, passive=True)
                found.append(name)
            except pika.exceptions.ChannelClosedByBroker:
                pass
    finally:
        connection.close()
    return found


def test_a_chain_of_five_passes_each_result_on_unless_immutable(flows: Any) -> None:
    result = chain(
        flows.add.s(1, 1), flows.mul.s(10), flows.add.s(5), flows.const.si(7), flows.add.s(3)
    ).delay()
    assert result.get(timeout=TIMEOUT) == 10
    assert result.parent.get(timeout=TIMEOUT) == 7
    assert result.parent.parent.get(timeout=TIMEOUT) == 25
    assert (flows.add.s(2, 2) | flows.mul.s(3)).delay().get(timeout=TIMEOUT) == 12


def test_a_failing_step_stops_the_chain_and_runs_its_error_callback(
    flows: Any, tmp_path: Path
) -> None:
    errors, after = tmp_path / "errors.jsonl", tmp_path / "after.jsonl"
    workflow = chain(flows.add.s(1, 1), flows.boom.s(), flows.record.s(str(after)))
    result = workflow.apply_async(link_error=flows.record.s(str(errors)))
    with pytest.raises(ValueError, match="boom"):
        result.get(timeout=TIMEOUT)
    with pytest.raises(ValueError, match="boom"):
        result.parent.get(timeout=TIMEOUT)
    assert result.parent.parent.get(timeout=TIMEOUT) == 2
    wait_for(lambda: errors.exists(), timeout=TIMEOUT, what="the error callback")
    assert _lines(errors) == [result.parent.id]  # called once, with the failed step's id
    assert not after.exists()


def test_a_group_of_a_thousand_returns_its_values_in_order(flows: Any) -> None:
    result = group(flows.add.s(i, i) for i in range(1000)).delay()
    assert result.get(timeout=TIMEOUT) == [2 * i for i in range(1000)]
    assert result.completed_count() == 1000 and result.successful()
    assert flows.tsum.map([[1, 2], [3]]).delay().get(timeout=TIMEOUT) == [3, 3]
    assert flows.add.starmap([(1, 2), (3, 4)]).delay().get(timeout=TIMEOUT) == [3, 7]
    assert flows.add.chunks([(i, i) for i in range(10)], 4).delay().get(timeout=TIMEOUT) == [
        [0, 2, 4, 6],
        [8, 10, 12, 14],
        [16, 18],
    ]


def test_a_chord_of_200_calls_its_body_once_in_order_through_three_kills(
    flows: Any, broker_url: str, tmp_path: Path
) -> None:
    members, body = tmp_path / "members.txt", tmp_path / "body.jsonl"
    header = [
        flows.flaky.s(i, str(tmp_path / f"flaky-{i}"))
        if i % 40 == 0
        else flows.nap_echo.s(i, 0.4, str(members))
        for i in range(200)
    ]
    result = chord(header, flows.record.s(str(body))).delay()
    chord_id = result.parent.id
    fleet = flows.fleet
    for kill in range(1, 4):
        wait_for(
            lambda k=kill: members.exists() and len(members.read_text().split()) >= k * 40,
            timeout=TIMEOUT,
            what=f"progress before kill {kill}",
        )
        victim = fleet.workers[-1]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        fleet.start().wait_ready()
    assert result.get(timeout=120) == 200
    assert _lines(body) == [list(range(200))]
    wait_for(lambda: not _chord_queues_exist(broker_url, chord_id), what="chord queues deleted")
    assert _lines(body) == [list(range(200))]  # still exactly one body call


def test_a_chord_with_a_failing_member_calls_its_error_callback_not_its_body(
    flows: Any, broker_url: str, tmp_path: Path
) -> None:
    body, errors = tmp_path / "body.jsonl", tmp_path / "errors.jsonl"
    workflow = chord(
        [flows.add.s(1, 1), flows.always_flaky.s(3), flows.add.s(2, 2)],
        flows.record.s(str(body)),
    )
    workflow.link_error(flows.record.s(str(errors)))
    result = workflow.delay()
    chord_id = result.parent.id
    failed_id = result.parent.results[1].id
    with pytest.raises(ChordError, match=failed_id):
        result.get(timeout=TIMEOUT)
    wait_for(lambda: errors.exists(), timeout=TIMEOUT, what="the chord's error callback")
    assert _lines(errors) == [failed_id]
    wait_for(lambda: not _chord_queues_exist(broker_url, chord_id), what="chord queues deleted")
    assert not body.exists()
    dead = [
        h for h in dlq_headers(broker_url, f"{flows.fleet.queue}.dlq") if h.get("id") == failed_id
    ]
    assert [h.get("group") for h in dead] == [chord_id]


def test_chains_in_a_chord_and_chords_in_a_chain(flows: Any) -> None:
    nested = chord([chain(flows.add.s(i, i), flows.mul.s(10)) for i in range(5)], flows.tsum.s())
    assert nested.delay().get(timeout=TIMEOUT) == sum(20 * i for i in range(5))
    upgraded = chain(flows.const.s(3), group(flows.add.s(1), flows.add.s(2)), flows.tsum.s())
    assert upgraded.delay().get(timeout=TIMEOUT) == 9
    inside = chain(
        flows.const.s(3),
        chord([flows.add.s(1), flows.add.s(2)], flows.tsum.s()),
        flows.mul.s(2),
    )
    assert inside.delay().get(timeout=TIMEOUT) == 18
