"""The transactional outbox: nothing lost, nothing rolled back sent, while the relay is killed."""

from __future__ import annotations

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
from tests.integration.conftest import REPO, cli_env, wait_for
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


def test_outbox_loses_nothing_while_the_relay_is_sigkilled(
    django_project: Any,
    start_worker: Callable[..., WorkerProcess],
    django_worker_env: dict[str, str],
    broker_url: str,
    tmp_path: Path,
) -> None:
    from django.db import connection, transaction

    from amqptasks.contrib.django import outbox
    from amqptasks.contrib.django.outbox.models import OutboxMessage
    from tests.integration.djangoproj.shop.tasks import mark

    seen_path = tmp_path / "seen.txt"
    seen_path.touch()
    env = {**django_worker_env, "AMQPTASKS_TEST_OUTBOX_SEEN": str(seen_path)}
    start_worker("-c", "4", app=APP, env=env)
    relay_env = {**cli_env(broker_url), **env}
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
    kills = 0
    rng = random.Random(16)
    while producer.is_alive():
        relay = _relay(relay_env, relay_log)
        _started(relay_log, kills + 1)
        time.sleep(rng.uniform(0.05, 0.5))
        relay.send_signal(signal.SIGKILL)
        relay.wait(10)
        kills += 1
    producer.join()
    assert errors == []

    final = _relay(relay_env, relay_log)
    try:
        _started(relay_log, kills + 1)
        wait_for(lambda: not OutboxMessage.objects.exists(), timeout=60, what="an empty outbox")

        def seen() -> Counter[str]:
            return Counter(seen_path.read_text().split())

        wait_for(lambda: set(committed) <= set(seen()), timeout=60, what="every committed call")
    finally:
        final.send_signal(signal.SIGTERM)
        assert final.wait(20) == 0
    counts = seen()
    assert kills >= 3
    assert set(counts) == set(committed)  # nothing lost, nothing rolled back sent
    assert not set(rolled_back) & set(counts)
    # A relay killed between a confirm and its commit publishes those rows again,
    # with the same ids: at most one batch per kill.
    duplicates = sum(count - 1 for count in counts.values())
    assert duplicates <= kills * BATCH, relay_log.read_text()[-3000:]
    print(f"rows={len(committed)} kills={kills} duplicates={duplicates}")


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
