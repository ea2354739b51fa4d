"""The claims stream: workers agree on a task id's first publish, also those started later."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from amqptasks.config import BrokerURL
from amqptasks.dedupe.book import ClaimBook
from amqptasks.dedupe.stream import ClaimStream, open_stream

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
    finally:
        for stream in (one, two, late):
            if stream is not None:
                await stream.close()
