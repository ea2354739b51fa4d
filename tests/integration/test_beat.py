"""Periodic tasks on a real node: several beat processes, one sends, each occurrence once.

Beats run as ``amqptasks beat`` subprocesses of ``tests.integration.apps.beat``;
a worker runs the probe task, which writes ``<entry> <task id>`` per run: what
is counted is what the worker ran. Task ids are occurrence ids (entry + UTC
instant), so each line maps back to the instant it was scheduled for.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pika
import pytest

from amqptasks.beat.entries import occurrence_id
from tests.integration.conftest import REPO, cli_env, lines, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.integration

BEAT_APP = "tests.integration.apps.beat:app"
UTC = dt.timezone.utc


class Beats:
    """``amqptasks beat`` subprocesses sharing one prefix; finds and kills the leader."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, count: int = 1) -> None:
        for _ in range(count):
            log_path = self.logs / f"beat-{len(self.procs)}.log"
            with log_path.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "amqptasks", "beat", "-A", BEAT_APP, "-l", "debug"],
                    cwd=REPO,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            self.procs.append((proc, log_path))

    def leader(self) -> subprocess.Popen[bytes] | None:
        """The live process whose log says it leads (and not that it stopped)."""
        for proc, path in self.procs:
            if proc.poll() is not None:
                continue
            text = path.read_text(errors="replace")
            if text.rfind("beat leads") > text.rfind("beat stops leading"):
                return proc
        return None

    def kill_leader(self) -> None:
        proc = wait_for(self.leader, 20, "a leader")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, path in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise AssertionError(f"beat did not stop:\n{path.read_text()}") from None

    def logs_text(self) -> str:
        return "\n".join(path.read_text(errors="replace")[-3000:] for _, path in self.procs)


@pytest.fixture
def beat_env(
    broker_env: str, broker_url: str, unique_name: Callable[[str], str], tmp_path: Path
) -> Iterator[dict[str, str]]:
    """Environment of the beat test app: its own prefix, queue and probe file."""
    prefix, queue = unique_name("beat"), unique_name("beatq")
    env = {
        **cli_env(broker_url),
        "AMQPTASKS_BEAT_PREFIX": prefix,
        "BEAT_TEST_QUEUE": queue,
        "BEAT_PROBE_FILE": str(tmp_path / "probe.txt"),
    }
    yield env
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        for name in (queue, f"{prefix}.leader", f"{prefix}.history", f"{prefix}.entries"):
            channel.queue_delete(name)
    finally:
        connection.close()


@pytest.fixture
def beats(beat_env: dict[str, str], tmp_path: Path) -> Iterator[Beats]:
    group = Beats(beat_env, tmp_path)
    yield group
    for proc, _ in group.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def runs(env: dict[str, str]) -> list[tuple[str, str]]:
    """``(entry, task id)`` of every probe run so far."""
    found = []
    for line in lines(Path(env["BEAT_PROBE_FILE"])):
        entry, task_id = line.split()
        found.append((entry, task_id))
    return found


def split(
    entry: str, task_ids: list[str], start: float, end: float
) -> tuple[list[dt.datetime], list[str]]:
    """The whole-second instants in [start, end] whose occurrence ids are among
    ``task_ids``, and the ids that are no such occurrence (manual triggers)."""
    by_id = {}
    for second in range(math.floor(start), math.ceil(end) + 1):
        instant = dt.datetime.fromtimestamp(second, UTC)
        by_id[occurrence_id(entry, instant)] = instant
    others = [task_id for task_id in task_ids if task_id not in by_id]
    return sorted(by_id[task_id] for task_id in task_ids if task_id in by_id), others


def instants(entry: str, task_ids: list[str], start: float, end: float) -> list[dt.datetime]:
    """:func:`split`'s instants, when every id is an occurrence of the span."""
    found, others = split(entry, task_ids, start, end)
    assert others == [], f"{entry}: task ids that are no occurrence of the test's time span"
    return found


def settle(env: dict[str, str]) -> list[tuple[str, str]]:
    """The probe runs once the worker has run everything (no new line for 2 s)."""
    previous = -1
    while True:
        found = runs(env)
        if len(found) == previous:
            return found
        previous = len(found)
        time.sleep(2)


def beat_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "amqptasks", "beat", "-A", BEAT_APP, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_leader_killed_five_times_then_all_stopped_each_occurrence_once(
    beats: Beats, beat_env: dict[str, str], start_worker: Callable[..., object]
) -> None:
    start_worker(app=BEAT_APP, env=beat_env)
    began = time.time()
    beats.start(3)
    for _ in range(5):
        time.sleep(10)
        beats.kill_leader()
        beats.start(1)  # the killed process comes back, as a service manager would
    time.sleep(5)

    # Every beat stopped for 20 s, then restarted just after a ten-second boundary (the
    # slow entries' occurrences), so the latest missed one is before the restart.
    beats.stop_all()
    stopped = time.time()
    wait_for(lambda: time.time() >= stopped + 20 and 0.2 <= time.time() % 10 <= 0.8, 35)
    restarted = time.time()
    beats.start(3)
    time.sleep(5)
    beats.stop_all()
    ended = time.time()
    found = settle(beat_env)

    by_entry: dict[str, list[str]] = {}
    for entry, task_id in found:
        by_entry.setdefault(entry, []).append(task_id)
    for entry, task_ids in by_entry.items():
        duplicated = [task_id for task_id, n in Counter(task_ids).items() if n > 1]
        assert duplicated == [], f"{entry}: run more than once\n{beats.logs_text()}"

    # catch_up="all": every second from the first run to the last, through five leader
    # kills and the 20 s outage.
    fast_all = instants("fast-all", by_entry["fast-all"], began - 5, ended + 5)
    expected = [
        fast_all[0] + dt.timedelta(seconds=n)
        for n in range(int((fast_all[-1] - fast_all[0]).total_seconds()) + 1)
    ]
    missing = sorted(set(expected) - set(fast_all))
    assert missing == [], f"fast-all: occurrences never run\n{beats.logs_text()}"
    assert fast_all[0].timestamp() < began + 15 and fast_all[-1].timestamp() > restarted
    instants("fast-latest", by_entry["fast-latest"], began - 5, ended + 5)

    # The outage: "latest" runs only its most recent missed occurrence, "skip" none.
    def in_outage(entry: str) -> list[float]:
        found_instants = instants(entry, by_entry.get(entry, []), began - 5, ended + 5)
        return [i.timestamp() for i in found_instants if stopped < i.timestamp() <= restarted]

    latest_missed = math.floor(restarted / 10) * 10
    assert in_outage("slow-latest") == [latest_missed]
    assert in_outage("slow-skip") == []
    assert [i for i in in_outage("fast-latest") if i < restarted - 1] == []


def test_runtime_changes_reach_the_leader_and_survive_a_change_of_leader(
    beats: Beats, beat_env: dict[str, str], start_worker: Callable[..., object]
) -> None:
    env = {**beat_env, "BEAT_TEST_ENTRIES": "0"}
    beats.env = env
    start_worker(app=BEAT_APP, env=env)
    began = time.time()
    beats.start(2)
    wait_for(beats.leader, 20, "a leader")

    def rt_instants() -> list[float]:
        ids = [task_id for entry, task_id in runs(env) if entry == "rt"]
        return [i.timestamp() for i in instants("rt", ids, began - 5, time.time() + 5)]

    beat_cli(env, "add", "rt", "--task", "beat.probe", "--every", "1", "--args", '["rt"]')
    wait_for(rt_instants, 5, "the added entry's first run")

    beat_cli(env, "pause", "rt")
    paused = time.time()
    beats.kill_leader()  # the next leader must know it is paused
    beats.start(1)
    wait_for(beats.leader, 20, "a new leader")
    time.sleep(3)
    assert [i for i in settle_rt(rt_instants) if i > paused + 1] == []

    beat_cli(env, "resume", "rt")
    resumed = time.time()
    wait_for(lambda: [i for i in rt_instants() if i > resumed], 5, "a run after resume")
    beats.kill_leader()
    killed = time.time()
    beats.start(1)
    wait_for(lambda: [i for i in rt_instants() if i > killed + 1], 20, "runs under a new leader")

    beat_cli(env, "trigger", "rt")

    def triggered() -> list[str]:
        ids = [task_id for entry, task_id in runs(env) if entry == "rt"]
        return split("rt", ids, began - 5, time.time() + 5)[1]

    wait_for(triggered, 10, "the triggered run")
    status = beat_cli(env, "status")
    assert "rt  [runtime]" in status and "every 1 second" in status
    beat_cli(env, "remove", "rt")
    beats.stop_all()
    ids = [task_id for entry, task_id in settle(env) if entry == "rt"]
    assert len(ids) == len(set(ids))
    assert len(triggered()) == 1


def settle_rt(read: Callable[[], list[float]]) -> list[float]:
    time.sleep(1)
    return read()


def test_worker_with_beat_fires_and_runs_an_entry(
    beat_env: dict[str, str], start_worker: Callable[..., object]
) -> None:
    worker = start_worker("-B", app=BEAT_APP, env=beat_env)
    wait_for(lambda: [1 for entry, _ in runs(beat_env) if entry == "fast-all"], 20, "a run")
    worker.signal(signal.SIGTERM)  # type: ignore[attr-defined]
    assert worker.wait(30) == 0  # type: ignore[attr-defined]
    ids = [task_id for entry, task_id in runs(beat_env) if entry == "fast-all"]
    assert len(ids) == len(set(ids))
    assert os.path.exists(beat_env["BEAT_PROBE_FILE"])
