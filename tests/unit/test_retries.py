"""Task retry policy (pure): delays, decisions, and the task options that make it."""

from __future__ import annotations

from typing import Any

import pytest

from amqptasks import App
from amqptasks.exceptions import ConfigError, Reject, Retry
from amqptasks.policies.retry import Decision, RetryPolicy
from amqptasks.task import RETRY_OPTIONS, TASK_OPTIONS, check_task_options, split_retry_options

URL = "amqp://guest:guest@127.0.0.1:1//"


def fixed(value: float) -> Any:
    """An rng that always returns ``value``."""
    return lambda: value


class Boom(Exception):
    pass


class SmallBoom(Boom):
    pass


class Harmless(SmallBoom):
    pass


# --------------------------------------------------------------------------- next_delay


def test_without_backoff_the_delay_is_default_retry_delay() -> None:
    policy = RetryPolicy(default_retry_delay=42, retry_jitter=True)
    assert [policy.next_delay(n, rng=fixed(0.5)) for n in range(5)] == [42] * 5


def test_defaults_are_celerys() -> None:
    policy = RetryPolicy()
    assert policy.max_retries == 3
    assert policy.default_retry_delay == 180
    assert policy.retry_backoff is False
    assert policy.retry_backoff_max == 600
    assert policy.retry_jitter is True
    assert policy.autoretry_for == ()
    assert policy.next_delay(0) == 180


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(retry_backoff=True, retry_backoff_max=10, retry_jitter=False)
    assert [policy.next_delay(n) for n in range(7)] == [1, 2, 4, 8, 10, 10, 10]


def test_backoff_factor_multiplies() -> None:
    policy = RetryPolicy(retry_backoff=3, retry_backoff_max=600, retry_jitter=False)
    assert [policy.next_delay(n) for n in range(5)] == [3, 6, 12, 24, 48]
    half = RetryPolicy(retry_backoff=0.5, retry_backoff_max=600, retry_jitter=False)
    assert [half.next_delay(n) for n in range(3)] == [0.5, 1, 2]


def test_backoff_stays_capped_after_very_many_retries() -> None:
    # max_retries=None retries for ever; 2.0 ** 1100 overflows a float.
    policy = RetryPolicy(
        max_retries=None, retry_backoff=True, retry_backoff_max=600, retry_jitter=False
    )
    assert policy.next_delay(1100) == 600
    forever = RetryPolicy(
        max_retries=None, autoretry_for=(Boom,), retry_backoff=True, retry_jitter=False
    )
    exc = Boom()
    assert forever.decide(exc, retries=5000) == Decision("retry", countdown=600, exception=exc)


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.5, 0.999999])
def test_jitter_draws_from_the_rng_between_zero_and_the_backoff(draw: float) -> None:
    policy = RetryPolicy(retry_backoff=True, retry_backoff_max=600, retry_jitter=True)
    for retries in range(12):
        backoff = min(600, 2**retries)
        delay = policy.next_delay(retries, rng=fixed(draw))
        assert delay == pytest.approx(draw * backoff)
        assert 0 <= delay <= backoff


def test_jitter_uses_the_rng_it_is_given() -> None:
    calls: list[int] = []

    def rng() -> float:
        calls.append(1)
        return 0.5

    policy = RetryPolicy(retry_backoff=True, retry_jitter=True)
    assert policy.next_delay(3, rng=rng) == 4
    assert calls == [1]


# --------------------------------------------------------------------------- decide


def test_reject_is_dead_lettered_as_rejected() -> None:
    exc = Reject("poison")
    policy = RetryPolicy(autoretry_for=(Exception,))
    assert policy.decide(exc, retries=0) == Decision(
        "dead-letter", reason="rejected", exception=exc
    )


def test_retry_with_countdown_retries_after_that_countdown() -> None:
    cause = Boom("later")
    decision = RetryPolicy().decide(Retry(exc=cause, countdown=7), retries=0)
    assert decision == Decision("retry", countdown=7, exception=cause)


def test_retry_with_countdown_zero_is_honoured() -> None:
    policy = RetryPolicy(default_retry_delay=99)
    assert policy.decide(Retry(countdown=0), retries=0).countdown == 0


def test_retry_without_countdown_uses_the_policy_delay() -> None:
    policy = RetryPolicy(retry_backoff=True, retry_jitter=False)
    assert policy.decide(Retry(), retries=2).countdown == 4
    plain = RetryPolicy(default_retry_delay=30)
    assert plain.decide(Retry(), retries=2).countdown == 30


def test_retry_without_exc_reports_itself() -> None:
    exc = Retry()
    assert RetryPolicy().decide(exc, retries=0).exception is exc


def test_retries_exhausted_dead_letters_with_the_cause() -> None:
    cause = Boom("still down")
    policy = RetryPolicy(max_retries=3)
    assert policy.decide(Retry(exc=cause), retries=2).action == "retry"
    decision = policy.decide(Retry(exc=cause, countdown=1), retries=3)
    assert decision == Decision("dead-letter", reason="max-retries-exceeded", exception=cause)
    assert policy.decide(Retry(exc=cause), retries=10).reason == "max-retries-exceeded"


def test_retry_max_retries_overrides_the_policy() -> None:
    policy = RetryPolicy(max_retries=3)
    assert policy.decide(Retry(max_retries=10), retries=5).action == "retry"
    assert policy.decide(Retry(max_retries=1), retries=1).action == "dead-letter"
    assert policy.decide(Retry(max_retries=0), retries=0).reason == "max-retries-exceeded"


def test_max_retries_none_is_unlimited() -> None:
    policy = RetryPolicy(max_retries=None, autoretry_for=(Boom,), default_retry_delay=1)
    assert policy.decide(Boom(), retries=10_000).action == "retry"
    assert policy.decide(Retry(), retries=10_000).action == "retry"


def test_max_retries_zero_never_retries() -> None:
    policy = RetryPolicy(max_retries=0, autoretry_for=(Boom,))
    assert policy.decide(Boom(), retries=0).reason == "max-retries-exceeded"


def test_autoretry_for_matches_subclasses() -> None:
    policy = RetryPolicy(autoretry_for=(Boom,), default_retry_delay=5)
    exc = SmallBoom()
    assert policy.decide(exc, retries=0) == Decision("retry", countdown=5, exception=exc)
    assert policy.decide(exc, retries=3) == Decision(
        "dead-letter", reason="max-retries-exceeded", exception=exc
    )


def test_autoretry_for_several_types() -> None:
    policy = RetryPolicy(autoretry_for=(KeyError, OSError))
    assert policy.decide(ConnectionResetError(), retries=0).action == "retry"
    assert policy.decide(KeyError("k"), retries=0).action == "retry"
    assert policy.decide(ValueError(), retries=0).action == "dead-letter"


def test_dont_autoretry_for_wins() -> None:
    policy = RetryPolicy(autoretry_for=(Boom,), dont_autoretry_for=(SmallBoom,))
    assert policy.decide(Boom(), retries=0).action == "retry"
    assert policy.decide(SmallBoom(), retries=0).reason == "failed"
    assert policy.decide(Harmless(), retries=0).reason == "failed"


def test_a_failure_that_is_not_retried_is_dead_lettered_as_failed() -> None:
    exc = ValueError("bad input")
    policy = RetryPolicy(autoretry_for=(Boom,))
    assert policy.decide(exc, retries=0) == Decision("dead-letter", reason="failed", exception=exc)


def test_without_dead_letter_failures_a_failure_just_fails() -> None:
    exc = ValueError("bad input")
    policy = RetryPolicy(dead_letter_failures=False)
    assert policy.decide(exc, retries=0) == Decision("fail", exception=exc)
    # Exhausted retries and Reject still go to the DLQ.
    assert policy.decide(Reject(), retries=0).action == "dead-letter"
    assert policy.decide(Retry(), retries=3).action == "dead-letter"


def test_decision_defaults() -> None:
    assert Decision("fail") == Decision("fail", countdown=0.0, reason="", exception=None)


@pytest.mark.parametrize(
    "options",
    [
        {"autoretry_for": [Boom]},
        {"autoretry_for": Boom},
        {"autoretry_for": (Boom, "x")},
        {"autoretry_for": (Boom(),)},
        {"autoretry_for": (int,)},
        {"dont_autoretry_for": (object,)},
        {"max_retries": -1},
        {"retry_backoff_max": -1},
        {"default_retry_delay": -0.5},
    ],
)
def test_invalid_policies_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**options)


# --------------------------------------------------------------------------- task options


def test_retry_options_are_task_options() -> None:
    assert set(RETRY_OPTIONS) <= set(TASK_OPTIONS)
    assert set(RETRY_OPTIONS) == {
        "max_retries",
        "autoretry_for",
        "dont_autoretry_for",
        "retry_backoff",
        "retry_backoff_max",
        "retry_jitter",
        "default_retry_delay",
        "dead_letter_failures",
    }
    check_task_options({name: None for name in RETRY_OPTIONS}, ("json",))
    with pytest.raises(ConfigError, match="retry_backof"):
        check_task_options({"retry_backof": True}, ("json",))


@pytest.mark.parametrize("value", [Boom, [Boom], (Boom,)])
def test_split_retry_options_accepts_one_type_a_list_or_a_tuple(value: Any) -> None:
    rest, policy = split_retry_options(
        {"autoretry_for": value, "dont_autoretry_for": [KeyError]}, {}
    )
    assert rest == {}
    assert policy.autoretry_for == (Boom,)
    assert policy.dont_autoretry_for == (KeyError,)


def test_split_retry_options_keeps_other_options_and_applies_defaults() -> None:
    defaults = {"max_retries": 7, "default_retry_delay": 11, "dead_letter_failures": False}
    rest, policy = split_retry_options({"name": "t", "queue": "q", "bind": True}, defaults)
    assert rest == {"name": "t", "queue": "q", "bind": True}
    assert (policy.max_retries, policy.default_retry_delay, policy.dead_letter_failures) == (
        7,
        11,
        False,
    )


def test_split_retry_options_task_options_override_app_defaults() -> None:
    defaults = {"max_retries": 7, "default_retry_delay": 11}
    _, policy = split_retry_options(
        {"max_retries": None, "default_retry_delay": 2, "retry_backoff": 5}, defaults
    )
    assert policy.max_retries is None
    assert policy.default_retry_delay == 2
    assert policy.retry_backoff == 5


def test_split_retry_options_validates() -> None:
    with pytest.raises(ConfigError):
        split_retry_options({"max_retries": -2}, {})
    with pytest.raises(ConfigError):
        split_retry_options({"autoretry_for": "OSError"}, {})


def test_the_task_decorator_builds_the_policy_from_app_settings_and_options() -> None:
    app = App(
        "t",
        broker_url=URL,
        task_max_retries=9,
        task_default_retry_delay=15,
        task_dead_letter_failures=False,
    )

    @app.task
    def plain() -> None: ...

    @app.task(autoretry_for=OSError, max_retries=2, retry_backoff=True, retry_jitter=False)
    def flaky() -> None: ...

    assert plain.failure_policy == RetryPolicy(
        max_retries=9, default_retry_delay=15, dead_letter_failures=False
    )
    assert flaky.failure_policy.autoretry_for == (OSError,)
    assert flaky.failure_policy.max_retries == 2
    assert flaky.failure_policy.default_retry_delay == 15
    assert flaky.failure_policy.next_delay(3) == 8


def test_the_task_decorator_refuses_a_bad_retry_option() -> None:
    app = App("t", broker_url=URL)
    with pytest.raises(ConfigError):
        app.task(autoretry_for=("OSError",))(lambda: None)


def test_task_retry_raises_retry_with_its_arguments() -> None:
    app = App("t", broker_url=URL)

    @app.task(bind=True)
    def fetch(self: Any) -> None: ...

    cause = OSError("down")
    with pytest.raises(Retry) as raised:
        fetch.retry(exc=cause, countdown=10, max_retries=4)
    assert raised.value.exc is cause
    assert raised.value.countdown == 10
    assert raised.value.max_retries == 4
    with pytest.raises(Retry) as bare:
        fetch.retry()
    assert (bare.value.exc, bare.value.countdown, bare.value.max_retries) == (None, None, None)
    # The worker's decision for that Retry.
    decision = fetch.failure_policy.decide(raised.value, retries=0)
    assert decision == Decision("retry", countdown=10, exception=cause)


def test_the_old_name_of_a_tasks_failure_policy_still_works_with_a_warning() -> None:
    app = App("t", broker_url="amqp://guest:guest@127.0.0.1:1//")

    @app.task(max_retries=7)
    def flaky() -> None: ...

    with pytest.warns(DeprecationWarning, match="failure_policy"):
        assert flaky.retry_policy is flaky.failure_policy
    assert flaky.failure_policy.max_retries == 7
