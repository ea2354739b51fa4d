"""The metrics' per-call figures, counted in plain Python and exported when scraped.

prometheus-client's metric objects take a lock and look up their labels on every
update, and a worker with ``--metrics-port`` made seven such updates per call. Here a
call costs a few dict and list operations (:class:`amqptasks.control.metrics.Metrics`),
and :class:`TallyCollector` turns the counts into metric families only when
Prometheus scrapes (a custom collector, as prometheus-client documents for counts
kept elsewhere). The exporter's thread reads while counts are written: it copies
each dict and list in one C call (atomic under the GIL) before walking the copy.

"Prefetched" and "active" are not kept as gauges that go up and down with every call:
they are counted as Prometheus scrapes
(:meth:`~amqptasks.control.metrics.Metrics.count_held`).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["Buckets", "Tally", "TallyCollector"]


class Buckets:
    """One histogram's observations: a count per bucket (not cumulative) and their sum."""

    __slots__ = ("counts", "sum")

    def __init__(self, size: int) -> None:
        #: ``counts[i]`` holds the values in ``(bounds[i-1], bounds[i]]``; the last, above all.
        self.counts = [0] * (size + 1)
        self.sum = 0.0

    def cumulative(self, bounds: Sequence[float]) -> list[tuple[str, float]]:
        """Prometheus' ``le`` buckets: ``(upper bound, values at or below it)``, ``+Inf`` last."""
        counts = list(self.counts)
        total = 0
        rows: list[tuple[str, float]] = []
        for bound, count in zip((*map(_le, bounds), "+Inf"), counts, strict=True):
            total += count
            rows.append((bound, float(total)))
        return rows


def _le(bound: float) -> str:
    from prometheus_client.utils import floatToGoString

    # As prometheus-client's own Histogram writes ``le`` (the function has no annotations).
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


class Tally:
    """What the worker did, call by call: written on the worker's event loop, but
    ``active`` and ``prefetched``, set as Prometheus scrapes.

    Args:
        bounds: Upper bounds (seconds, ascending) of the runtime and queue-wait buckets.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        #: Calls settled, by ``(task, state)``.
        self.calls: dict[tuple[str, str], int] = {}
        #: Retries published, by task.
        self.retries: dict[str, int] = {}
        #: Messages dead-lettered, by ``(task, reason)``.
        self.dead_letters: dict[tuple[str, str], int] = {}
        #: How long calls ran and waited to start, by task.
        self.runtime: dict[str, Buckets] = {}
        self.queue_wait: dict[str, Buckets] = {}
        #: Calls running, and calls received and not started, at the last scrape.
        self.active = 0
        self.prefetched = 0

    def settled(
        self, task: str, state: str, runtime: float | None = None, waited: float | None = None
    ) -> None:
        """A call of ``task`` was settled as ``state`` (succeeded, failed, retried ...);
        if it started, after waiting ``waited`` seconds and running ``runtime``."""
        key = (task, state)
        calls = self.calls
        calls[key] = calls.get(key, 0) + 1
        bounds = self.bounds
        for histogram, seconds in ((self.runtime, runtime), (self.queue_wait, waited)):
            if seconds is None:
                continue
            buckets = histogram.get(task)
            if buckets is None:
                buckets = histogram[task] = Buckets(len(bounds))
            # ``bounds`` ascending, as the histogram's ``le`` labels: a value equal to a
            # bound counts in that bound's bucket.
            buckets.counts[bisect_left(bounds, seconds)] += 1
            buckets.sum += seconds

    def retried(self, task: str) -> None:
        """A retry of ``task`` was published."""
        self.retries[task] = self.retries.get(task, 0) + 1

    def dead_lettered(self, task: str, reason: str) -> None:
        """A message of ``task`` was dead-lettered for ``reason``."""
        key = (task, reason)
        self.dead_letters[key] = self.dead_letters.get(key, 0) + 1


class TallyCollector:
    """Exports a :class:`Tally` to a prometheus-client registry (``registry.register``).

    Args:
        tally: What it exports.
        before: Called before each export (to count the calls held now).
    """

    def __init__(self, tally: Tally, *, before: Callable[[], None] | None = None) -> None:
        self.tally = tally
        self.before = before

    def describe(self) -> Iterator[Any]:
        """The families without samples (so registering reads no counts)."""
        return self._families(empty=True)

    def collect(self) -> Iterator[Any]:
        """The families with the counts as they are now."""
        if self.before is not None:
            self.before()
        return self._families(empty=False)

    def _families(self, *, empty: bool) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        tally = self.tally
        calls = CounterMetricFamily("amqptasks_tasks", "Calls settled", labels=["task", "state"])
        retries = CounterMetricFamily(
            "amqptasks_task_retries", "Retries published", labels=["task"]
        )
        dead = CounterMetricFamily(
            "amqptasks_dead_letters", "Messages dead-lettered", labels=["task", "reason"]
        )
        runtime = HistogramMetricFamily(
            "amqptasks_task_runtime_seconds", "How long calls ran", labels=["task"]
        )
        wait = HistogramMetricFamily(
            "amqptasks_task_queue_wait_seconds",
            "From eta (or arrival at the worker) to start",
            labels=["task"],
        )
        if not empty:
            for (task, state), count in tally.calls.copy().items():
                calls.add_metric([task, state], count)
            for task, count in tally.retries.copy().items():
                retries.add_metric([task], count)
            for (task, reason), count in tally.dead_letters.copy().items():
                dead.add_metric([task, reason], count)
            for family, observed in ((runtime, tally.runtime), (wait, tally.queue_wait)):
                for task, buckets in observed.copy().items():
                    family.add_metric([task], buckets.cumulative(tally.bounds), buckets.sum)
        yield calls
        yield runtime
        yield wait
        yield GaugeMetricFamily(
            "amqptasks_tasks_active", "Calls running", value=None if empty else tally.active
        )
        yield GaugeMetricFamily(
            "amqptasks_tasks_prefetched",
            "Calls received, not started",
            value=None if empty else tally.prefetched,
        )
        yield retries
        yield dead
