"""The claims stream: workers agree on a task id's first publish, also those started later."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from amqptasks import constants
from amqptasks.config import BrokerURL
from amqptasks.dedupe.book import ClaimBook
from amqptasks.dedupe.stream import ClaimStream, open_stream
from tests.integration.conftest import lines, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.integration.conftest import WorkerProcess

pytestmark = pytest.mark.integration


async def _open(url: BrokerURL, name: str) -> ClaimStream:
    return await open_stream(ClaimBook(3600.0), name, url, publish_timeout=10.0)


async def test_workers_agree_on_the_first_publish_and_a_late_worker_knows_it(
    broker_url: str,
) -> None:
    url = BrokerURL.parse(broker_url)
    one, two = await asyncio.gather(_open(url, "one@test"), _open(url, "two@test"))
    late: ClaimStream | None = None
    try:
        task_ids = [str(uuid.uuid4()) for _ in range(20)]
        # Each task id claimed at once by both workers, each for its own publish.
        answers = await asyncio.gather(
            *(
                stream.claim(task_id, f"{task_id}:{stream.hostname}")
                for task_id in task_ids
                for stream in (one, two)
            )
        )
        for n, task_id in enumerate(task_ids):
            by_one, by_two = answers[2 * n], answers[2 * n + 1]
            assert by_one == by_two  # one publish runs, whichever worker holds it
            assert by_one in (f"{task_id}:one@test", f"{task_id}:two@test")
        # The winning publish claimed again (a redelivery, a retry): still the winner.
        assert await two.claim(task_ids[0], answers[0] or "") == answers[0]
        # A worker started later reads the claims of the window before deciding.
        late = await _open(url, "late@test")
        assert await late.claim(task_ids[1], "a-third-publish") == answers[2]
        assert all(late.book.winner(task_id) is not None for task_id in task_ids)
        # What a claim costs a marked delivery (a figure, not a limit).
        started = time.perf_counter()
        for n in range(50):
            await one.claim(f"timing-{uuid.uuid4()}", f"p{n}")
        print(f"one claim after another: {(time.perf_counter() - started) / 50 * 1000:.1f} ms")
    finally:
        for stream in (one, two, late):
            if stream is not None:
                await stream.close()


def test_a_worker_runs_one_publish_of_a_task_id_with_its_retries(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    queue_name: str,
    tmp_path: Path,
) -> None:
    ledger = str(tmp_path / "ledger")
    worker = start_worker("-Q", queue_name, "-c", "2")
    task_id = str(uuid.uuid4())

    def publish(publish_id: str) -> None:
        headers = {constants.HEADER_PUBLISH_ID: publish_id}
        core.flaky.apply_async((ledger, "a", 1), task_id=task_id, queue=queue_name, headers=headers)

    publish("outbox:1:first")
    wait_for(lambda: "a 0" in lines(Path(ledger)), what="the first attempt")
    publish("outbox:1:again")  # the relay, restarted, publishing the row again
    # Unmarked messages are not looked at: the same id twice runs twice.
    plain = str(uuid.uuid4())
    for _ in range(2):
        core.record.apply_async((ledger, "plain"), task_id=plain, queue=queue_name)
    wait_for(lambda: "redundant publish skipped" in worker.log(), what="the skip")
    wait_for(lambda: len(lines(Path(ledger))) >= 4, what="the retry and the plain calls")
    time.sleep(0.3)
    # The first publish ran, then its retry (same publish id); the second never ran.
    assert sorted(lines(Path(ledger))) == ["a 0", "a 1", "plain", "plain"]
