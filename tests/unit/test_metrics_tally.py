"""The metrics' per-call counts (amqptasks.control.tally) as Prometheus reads them."""

from __future__ import annotations

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from amqptasks.control.metrics import Metrics
from amqptasks.control.tally import Tally, TallyCollector
from amqptasks.protocol.envelope import build_task_message, parse_task_message
from amqptasks.worker.decisions import DeadLetter, Finish, Skip
from amqptasks.worker.outcome import Outcome
from amqptasks.worker.state import MessageState

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
        tally.settled("app.add", "succeeded", runtime, wait)
    tally.settled("app.fail", "failed", 0.2, 0.0)
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


def test_an_empty_tally_exports_its_families_without_samples() -> None:
    samples = _samples(Tally(BOUNDS))
    assert samples == {("amqptasks_tasks_active", ()): 0, ("amqptasks_tasks_prefetched", ()): 0}


class _Delivery:
    headers = None
    correlation_id = None
    message_id = None


def _state(n: int) -> MessageState:
    out = build_task_message(
        task="proj.add", task_id=f"id-{n}", args=(n,), kwargs={}, exchange="", routing_key="q"
    )
    state = MessageState(_Delivery(), "q", None)  # type: ignore[arg-type]
    state.message = parse_task_message(
        out.body, headers=out.headers, content_type=out.content_type, accept_content=("json",)
    )
    return state


def _scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = prometheus_client.generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_scrape_counts_the_calls_settled_before_it() -> None:
    metrics = Metrics(0)
    for n, fails in enumerate((False, False, True)):
        state = _state(n)
        metrics.on_decoded(state)
        state.started_at = state.received_at
        state.outcome = Outcome.failure(ValueError()) if fails else Outcome.success(n)
        decision = DeadLetter("failed", ValueError()) if fails else Finish(report=state.outcome)
        metrics.before_settle(state, decision)

    samples = _scrape(metrics)

    assert samples[("amqptasks_tasks_total", (("state", "succeeded"), ("task", "proj.add")))] == 2
    assert samples[("amqptasks_tasks_total", (("state", "failed"), ("task", "proj.add")))] == 1
    assert samples[("amqptasks_task_runtime_seconds_count", (("task", "proj.add"),))] == 3
    wait = ("amqptasks_task_queue_wait_seconds_bucket", (("le", "0.025"), ("task", "proj.add")))
    assert samples[wait] == 3
    dead = ("amqptasks_dead_letters_total", (("reason", "failed"), ("task", "proj.add")))
    assert samples[dead] == 1
    assert samples[("amqptasks_tasks_active", ())] == 0
    assert samples[("amqptasks_tasks_prefetched", ())] == 0


def test_active_and_prefetched_are_the_calls_held_as_prometheus_scrapes() -> None:
    metrics = Metrics(0)
    states = [_state(n) for n in range(5)]
    for state in states:
        metrics.on_decoded(state)
    for state in states[:3]:
        state.started_at = state.received_at
    states[0].outcome = Outcome.success(0)
    metrics.before_settle(states[0], Finish(report=states[0].outcome))  # started, ended
    metrics.before_settle(states[4], Skip())  # never started (revoked, say)

    samples = _scrape(metrics)

    assert samples[("amqptasks_tasks_active", ())] == 2
    assert samples[("amqptasks_tasks_prefetched", ())] == 1
    assert samples[("amqptasks_tasks_total", (("state", "revoked"), ("task", "proj.add")))] == 1
    # The call that never started has no runtime and no wait.
    assert samples[("amqptasks_task_runtime_seconds_count", (("task", "proj.add"),))] == 1
    assert samples[("amqptasks_task_queue_wait_seconds_count", (("task", "proj.add"),))] == 1
