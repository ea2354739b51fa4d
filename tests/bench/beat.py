"""Beat benchmark: firing lateness and the leader's CPU with many entries due at once.

Starts a private RabbitMQ node, declares ``--entries`` entries due every minute
(``cron("* * * * *")``), runs one beat in this process and, for ``--minutes``
minute boundaries, records how late each occurrence's publish was confirmed
(confirm time minus scheduled instant). Prints lateness p50/p99/max per minute
and overall, and the leader's CPU (process time over wall time, and CPU seconds
per firing of all entries). Not a test::

    python -m tests.bench.beat [--entries 10000] [--minutes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import tempfile
import time

from amqptasks import App
from amqptasks.beat.scheduler import Beat
from amqptasks.beat.schedules import cron
from amqptasks.testing import RabbitNode


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(app: App, entries: int, minutes: int) -> None:
    beat = Beat(app, node_name="beat-bench")
    beat.record_lateness = True
    runner = asyncio.ensure_future(beat.run())
    await beat.leading.wait()
    now = time.time()
    first = (int(now // 60) + 1) * 60  # the next minute boundary
    await asyncio.sleep(first - now - 1)
    cpu0, wall0 = time.process_time(), time.time()
    per_minute: list[list[float]] = []
    for _ in range(minutes):
        start = len(beat.lateness)
        while len(beat.lateness) - start < entries:
            await asyncio.sleep(0.05)
        per_minute.append(beat.lateness[start : start + entries])
        done_at = time.time()
        late = per_minute[-1]
        print(
            f"minute {len(per_minute)}: {entries} sent; lateness p50 {statistics.median(late):.3f}"
            f" s, p99 {percentile(late, 0.99):.3f} s, max {max(late):.3f} s"
            f" (all sent {done_at % 60:.2f} s past the minute)",
            flush=True,
        )
    # Up to just before the next firing: a whole cycle of work and idle.
    await asyncio.sleep(max(0.0, (first + minutes * 60 - 1) - time.time()))
    cpu, wall = time.process_time() - cpu0, time.time() - wall0
    beat.stop()
    await runner
    everything = [value for minute in per_minute for value in minute]
    print(
        f"\n{entries} entries due each minute, {minutes} minutes:\n"
        f"  firing lateness: p50 {statistics.median(everything):.3f} s, "
        f"p99 {percentile(everything, 0.99):.3f} s, max {max(everything):.3f} s\n"
        f"  leader CPU: {cpu:.1f} s over {wall:.0f} s wall = {100 * cpu / wall:.1f} % of a core "
        f"on average, {cpu / minutes:.1f} CPU s per minute (one firing of all entries)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--minutes", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amqptasks-bench-") as base:
        os.chmod(base, 0o755)
        node = RabbitNode(base).start()
        try:
            app = App(
                "beatbench",
                broker_url=node.amqp_url,
                default_queue="beat-bench",
                task_ignore_result=True,
            )
            every_minute = cron("* * * * *")
            for index in range(args.entries):
                app.add_periodic_task(every_minute, "bench.noop", name=f"entry-{index}")
            print(
                f"beat bench: {args.entries} entries, started {dt.datetime.now():%H:%M:%S}",
                flush=True,
            )
            asyncio.run(measure(app, args.entries, args.minutes))
        finally:
            node.stop()


if __name__ == "__main__":
    main()
