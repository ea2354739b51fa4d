"""The metrics' per-call counts (amqptasks.control.tally) as Prometheus reads them."""

from __future__ import annotations

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from amqptasks.control.tally import Tally, TallyCollector

BOUNDS = (0.01, 0.1, 1.0)


def _samples(tally: Tally) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = prometheus_client.CollectorRegistry()
    registry.register(TallyCollector(tally))
    text = prometheus_client.generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counts_and_histograms_parse_as_prometheus_text() -> None:
    tally = Tally(BOUNDS)
    for wait, runtime in ((0.005, 0.01), (0.05, 0.5), (2.0, 0.1)):
        tally.received += 1
        tally.observe_wait("app.add", wait)
        tally.observe_runtime("app.add", runtime)
        tally.settled("app.add", "succeeded")
    tally.received += 1
    tally.observe_wait("app.fail", 0.0)
    tally.observe_runtime("app.fail", 0.2)
    tally.settled("app.fail", "failed")
    tally.dead_lettered("app.fail", "failed")
    tally.retried("app.fail")
    samples = _samples(tally)

    assert samples[("amqptasks_tasks_total", (("state", "succeeded"), ("task", "app.add")))] == 3
    assert samples[("amqptasks_tasks_total", (("state", "failed"), ("task", "app.fail")))] == 1
    assert (
        samples[("amqptasks_dead_letters_total", (("reason", "failed"), ("task", "app.fail")))] == 1
    )
    assert samples[("amqptasks_task_retries_total", (("task", "app.fail"),))] == 1
    # Buckets are cumulative; a value equal to a bound counts in that bound's bucket.
    runtime = "amqptasks_task_runtime_seconds_bucket"
    assert [
        samples[(runtime, (("le", le), ("task", "app.add")))]
        for le in ("0.01", "0.1", "1.0", "+Inf")
    ] == [1, 2, 3, 3]
    wait = "amqptasks_task_queue_wait_seconds_bucket"
    assert [
        samples[(wait, (("le", le), ("task", "app.add")))] for le in ("0.01", "0.1", "1.0", "+Inf")
    ] == [1, 2, 2, 3]
    assert samples[("amqptasks_task_runtime_seconds_count", (("task", "app.add"),))] == 3
    assert (
        abs(samples[("amqptasks_task_runtime_seconds_sum", (("task", "app.add"),))] - 0.61) < 1e-9
    )
    assert samples[("amqptasks_tasks_active", ())] == 0
    assert samples[("amqptasks_tasks_prefetched", ())] == 0


def test_active_and_prefetched_follow_the_calls() -> None:
    tally = Tally(BOUNDS)
    tally.received += 5
    for _ in range(3):
        tally.observe_wait("t", 0.0)
    tally.observe_runtime("t", 0.1)  # one of the three started calls ended
    tally.settled_unstarted += 1  # one received call was settled unstarted (revoked, say)
    samples = _samples(tally)
    assert samples[("amqptasks_tasks_active", ())] == 2
    assert samples[("amqptasks_tasks_prefetched", ())] == 1
    assert tally.active == 2 and tally.prefetched == 1


def test_an_empty_tally_exports_its_families_without_samples() -> None:
    samples = _samples(Tally(BOUNDS))
    assert samples == {("amqptasks_tasks_active", ()): 0, ("amqptasks_tasks_prefetched", ()): 0}
