"""Soon: a job run once, a little after it is first asked for (batches flush on it)."""

from __future__ import annotations

import asyncio

from amqptasks.control.soon import Soon


def test_asking_twice_runs_the_job_once_after_the_delay() -> None:
    runs: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        soon = Soon(0.05, lambda: runs.append(loop.time()))
        asked = loop.time()
        soon.ask()
        await asyncio.sleep(0.02)
        soon.ask()  # the run asked for first still holds
        await asyncio.sleep(0.3)
        assert len(runs) == 1 and 0.045 <= runs[0] - asked < 0.3
        soon.ask()  # after a run, a new ask runs it again
        await asyncio.sleep(0.3)

    asyncio.run(main())
    assert len(runs) == 2


def test_a_cancelled_ask_does_not_run() -> None:
    runs: list[int] = []

    async def main() -> None:
        soon = Soon(0.02, lambda: runs.append(1))
        soon.ask()
        soon.cancel()
        await asyncio.sleep(0.06)

    asyncio.run(main())
    assert runs == []
