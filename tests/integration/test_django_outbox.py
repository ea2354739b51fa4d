"""The transactional outbox: nothing lost, nothing rolled back sent, each row run once,
while the relay is killed (also between a confirm and the delete)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from amqptasks.exceptions import ConfigError
from tests.integration.conftest import REPO, cli_env, lines, wait_for
from tests.integration.django_fixtures import django_project, django_worker_env

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.integration.conftest import WorkerProcess

__all__ = ["django_project", "django_worker_env"]

pytestmark = pytest.mark.integration

APP = "tests.integration.djangoproj.amqptasks:app"
BATCH = 20


class Rollback(Exception):
    pass


def _started(log: Path, count: int) -> None:
    wait_for(lambda: log.read_text().count("outbox relay ready") >= count, what="a relay to start")


def _relay(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "amqptasks", "outbox", "relay", "-A", APP]
    command += ["--batch", str(BATCH), "--interval", "0.05"]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_outbox_runs_each_row_once_while_the_relay_is_sigkilled(
    django_project: Any,
    start_worker: Callable[..., WorkerProcess],
    django_worker_env: dict[str, str],
    broker_url: str,
    rabbit: Any,
    tmp_path: Path,
) -> None:
    from django.db import connection, transaction

    from amqptasks.contrib.django import outbox
    from amqptasks.contrib.django.outbox.models import OutboxMessage
    from tests.integration.djangoproj.shop.tasks import mark

    seen_path = tmp_path / "seen.txt"
    seen_path.touch()
    deleting = tmp_path / "deleting.txt"
    deleting.touch()
    env = {**django_worker_env, "AMQPTASKS_TEST_OUTBOX_SEEN": str(seen_path)}
    # Two workers: a row published twice may reach both; each id still runs once.
    workers = [start_worker("-c", "2", app=APP, env=env) for _ in range(2)]
    # The relay writes a line to ``deleting`` as each pass begins its delete, and waits
    # DELETE_PAUSE s there (tests/integration/djangoproj/shop/models.py): its rows are
    # confirmed by then, so a kill there makes the next relay publish them again.
    relay_env = {
        **cli_env(broker_url),
        **env,
        "AMQPTASKS_TEST_OUTBOX_DELETING": str(deleting),
    }
    relay_log = tmp_path / "relay.log"

    committed: list[str] = []
    rolled_back: list[str] = []
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for n in range(400):
                try:
                    with transaction.atomic():
                        task_id = outbox.enqueue(mark, (n,))
                        if n % 4 == 3:
                            rolled_back.append(task_id)
                            raise Rollback
                except Rollback:
                    continue
                committed.append(task_id)
                time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    producer = threading.Thread(target=produce)
    producer.start()
    kills = in_delete = 0
    rng = random.Random(16)
    while producer.is_alive():
        relay = _relay(relay_env, relay_log)
        _started(relay_log, kills + 1)
        if kills % 2:
            time.sleep(rng.uniform(0.05, 0.5))  # anywhere: reading, publishing, deleting
        else:
            before = len(lines(deleting))
            with contextlib.suppress(AssertionError):  # the producer may be done: no pass
                wait_for(lambda b=before: len(lines(deleting)) > b, timeout=5)
                in_delete += 1  # between confirm and delete
        relay.send_signal(signal.SIGKILL)
        relay.wait(10)
        kills += 1
    producer.join()
    assert errors == []

    final = _relay(relay_env, relay_log)
    queue = os.environ["AMQPTASKS_TEST_DJANGO_QUEUE"]

    def seen() -> Counter[str]:
        return Counter(seen_path.read_text().split())

    def settled() -> bool:  # nothing ready, nothing held unacked by a worker
        return bool(rabbit.queue_depths().get(queue) == (0, 0))

    try:
        _started(relay_log, kills + 1)
        wait_for(lambda: not OutboxMessage.objects.exists(), timeout=60, what="an empty outbox")
        wait_for(lambda: set(committed) <= set(seen()), timeout=60, what="every committed call")
        wait_for(settled, timeout=30, what="every publish settled")
    finally:
        final.send_signal(signal.SIGTERM)
        assert final.wait(20) == 0
    counts = seen()
    skipped = sum(w.log().count("redundant publish skipped") for w in workers)
    print(f"rows={len(committed)} kills={kills} in_delete={in_delete} skipped={skipped}")
    assert kills >= 3 and in_delete >= 1
    assert set(counts) == set(committed)  # nothing lost, nothing rolled back sent
    assert not set(rolled_back) & set(counts)
    # A kill between a confirm and the delete publishes those rows again, with the same
    # ids: the workers run each id once and skip (ack) the other publishes.
    assert [task_id for task_id, count in counts.items() if count > 1] == []
    assert skipped >= in_delete, relay_log.read_text()[-3000:]


def test_the_outbox_refuses_an_option_it_cannot_carry(django_project: Any) -> None:
    from amqptasks.contrib.django import outbox

    with pytest.raises(ConfigError, match="unknown option"):
        outbox.enqueue("shop.anything", (), link={"task": "x"})


def test_countdown_becomes_an_eta_and_the_id_is_fixed_at_enqueue(django_project: Any) -> None:
    from django.db import transaction

    from amqptasks.contrib.django import outbox
    from amqptasks.contrib.django.outbox.models import OutboxMessage

    with transaction.atomic():
        task_id = outbox.enqueue("shop.later", (1,), countdown=60, task_id="fixed-id-1")
        row = OutboxMessage.objects.get(task_id=task_id)
        transaction.set_rollback(True)
    assert task_id == "fixed-id-1"
    assert "eta" in row.options and "countdown" not in row.options
    assert os.environ["DJANGO_SETTINGS_MODULE"].endswith("settings")
