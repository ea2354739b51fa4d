"""Rate limits, time limits and the prefetch split: the pure parts of issue #5."""

from __future__ import annotations

from typing import Any

import pytest

from amqptasks import App, ConfigError
from amqptasks.policies.limits import (
    TimeLimits,
    check_time_limits,
    parse_rate_limit,
    resolve_time_limits,
)
from amqptasks.worker.prefetch import split_prefetch
from amqptasks.worker.ratelimit import RateLimiter, TokenBucket
from amqptasks.worker.timelimits import (
    consumer_timeout_from_management,
    too_long_for_consumer_timeout,
)

# -- parse_rate_limit -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("10/s", 10.0),
        ("100/m", 100 / 60),
        ("1000/h", 1000 / 3600),
        ("2/sec", 2.0),
        ("30/min", 0.5),
        ("7200/hour", 2.0),
        (" 5 / s ", 5.0),
        ("0.5/s", 0.5),
        ("10", 10.0),
        ("10/", 10.0),
        (10, 10.0),
        (2.5, 2.5),
    ],
)
def test_rate_limits_are_calls_per_second(text: Any, per_second: float) -> None:
    assert parse_rate_limit(text) == pytest.approx(per_second)


@pytest.mark.parametrize("off", [None, "", 0, "0/s", "0"])
def test_no_rate_limit(off: Any) -> None:
    assert parse_rate_limit(off) is None


@pytest.mark.parametrize("bad", ["ten/s", "10/d", "10/x", "-1/s", "inf/s", True, [10], "nan/s"])
def test_bad_rate_limits_are_refused(bad: Any) -> None:
    with pytest.raises(ConfigError, match="rate_limit"):
        parse_rate_limit(bad)


# -- TokenBucket ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_hands_out_one_token_per_interval_in_order() -> None:
    clock = Clock()
    bucket = TokenBucket(5.0, clock=clock)
    waits = [bucket.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])


def test_twenty_calls_at_5_per_second_span_3_8_seconds() -> None:
    clock = Clock()
    bucket = TokenBucket(5.0, clock=clock)
    assert max(bucket.reserve() for _ in range(20)) == pytest.approx(3.8)


def test_bucket_refills_while_idle_but_never_above_capacity() -> None:
    clock = Clock()
    bucket = TokenBucket(2.0, clock=clock)
    assert bucket.reserve() == 0.0
    clock.now += 10  # idle: the bucket is full again (one token)
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.5)


def test_bucket_with_a_burst_capacity() -> None:
    clock = Clock()
    bucket = TokenBucket(1.0, capacity=3, clock=clock)
    assert [bucket.reserve() for _ in range(5)] == pytest.approx([0, 0, 0, 1, 2])


def test_bucket_waits_count_from_now() -> None:
    clock = Clock()
    bucket = TokenBucket(4.0, clock=clock)
    bucket.reserve()
    bucket.reserve()  # due at +0.25
    clock.now += 0.1
    assert bucket.reserve() == pytest.approx(0.4)  # due at +0.5, 0.4 from now


def test_a_cancelled_reservation_is_given_back() -> None:
    clock = Clock()
    bucket = TokenBucket(5.0, clock=clock)
    bucket.reserve()
    wait = bucket.reserve()
    bucket.cancel(wait)
    assert bucket.reserve() == pytest.approx(wait)


@pytest.mark.parametrize(("rate", "capacity"), [(0, 1), (-1, 1), (float("inf"), 1), (1, 0)])
def test_bucket_arguments_are_checked(rate: float, capacity: int) -> None:
    with pytest.raises(ConfigError):
        TokenBucket(rate, capacity)


def test_rate_limiter_keeps_one_bucket_per_task() -> None:
    limiter = RateLimiter()
    assert limiter.reserve("a", "1/s") == 0.0
    assert limiter.reserve("a", "1/s") == pytest.approx(1.0, abs=0.05)
    assert limiter.reserve("b", "1/s") == 0.0
    assert limiter.reserve("c", None) == 0.0
    assert limiter.reserve("c", None) == 0.0
    limiter.cancel("c", 1.0)  # not limited: nothing to give back


# -- time limits ------------------------------------------------------------------------------


def test_the_call_wins_then_the_task_then_the_worker() -> None:
    assert resolve_time_limits((1, 2), (3, 4), (5, 6)) == TimeLimits(1, 2)
    assert resolve_time_limits((None, None), (3, 4), (5, 6)) == TimeLimits(3, 4)
    assert resolve_time_limits((None, None), (None, None), (5, 6)) == TimeLimits(5, 6)
    assert resolve_time_limits((None, None), (None, None), (None, None)) == TimeLimits()
    # Each limit on its own: the call's hard limit, the task's soft one.
    assert resolve_time_limits((None, 10), (3, None), (5, 6)) == TimeLimits(3, 10)


def test_a_soft_limit_not_below_the_hard_one_is_dropped() -> None:
    assert resolve_time_limits((None, 2), (5, None), (None, None)) == TimeLimits(None, 2)


@pytest.mark.parametrize("junk", ["x", -1, 0, True, [1], float("inf"), {"a": 1}])
def test_junk_in_the_header_means_no_limit(junk: Any) -> None:
    assert resolve_time_limits((junk, junk), (None, None), (None, 7)) == TimeLimits(None, 7)


def test_header_numbers_may_be_strings() -> None:
    assert resolve_time_limits(("1.5", "3"), (None, None), (None, None)) == TimeLimits(1.5, 3.0)


def test_time_limits_describe_themselves() -> None:
    assert TimeLimits(1, 2.5).describe() == "soft 1s, hard 2.5s"
    assert TimeLimits().describe() == "none"
    assert not TimeLimits() and TimeLimits(hard=1)


@pytest.mark.parametrize(
    ("soft", "hard", "match"),
    [
        (0, None, "soft_time_limit must be"),
        (None, -1, "time_limit must be"),
        ("5", None, "soft_time_limit must be"),
        (None, True, "time_limit must be"),
        (5, 5, "must be below time_limit"),
        (10, 5, "must be below time_limit"),
    ],
)
def test_bad_time_limits_are_refused(soft: Any, hard: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_time_limits(soft, hard, "here")


def test_consumer_timeout_from_the_management_api() -> None:
    assert consumer_timeout_from_management(None) is None
    assert consumer_timeout_from_management({"arguments": {}}) is None
    assert consumer_timeout_from_management({"arguments": {"x-consumer-timeout": 60000}}) == 60
    both = {
        "arguments": {"x-consumer-timeout": 60000},
        "effective_policy_definition": {"consumer-timeout": 30000},
    }
    assert consumer_timeout_from_management(both) == 30  # the lower wins, as RabbitMQ does


def test_too_long_for_the_consumer_timeout() -> None:
    limits = [("a", 10.0), ("b", None), ("c", 120.0)]
    assert too_long_for_consumer_timeout(limits, 60) == [("c", 120.0)]
    assert too_long_for_consumer_timeout(limits, 0) == []  # the broker has none


# -- task and call options ----------------------------------------------------------------------


def test_task_options_carry_the_limits() -> None:
    app = App("t")

    @app.task(time_limit=10, soft_time_limit=5, rate_limit="10/m")
    def limited() -> None: ...

    assert (limited.time_limit, limited.soft_time_limit, limited.rate_limit) == (10, 5, "10/m")


@pytest.mark.parametrize(
    "options",
    [
        {"rate_limit": "often"},
        {"time_limit": 0},
        {"soft_time_limit": 10, "time_limit": 5},
    ],
)
def test_bad_task_limits_fail_at_decoration(options: dict[str, Any]) -> None:
    app = App("t")
    with pytest.raises(ConfigError):
        app.task(**options)(lambda: None)


# -- prefetch ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "queues", "shares"),
    [
        (8, 1, [8]),
        (8, 2, [4, 4]),
        (8, 3, [3, 3, 2]),
        (4, 3, [2, 1, 1]),
        (3, 3, [1, 1, 1]),
        (2, 3, [1, 1, 1]),  # at least one each
        (1, 1, [1]),
    ],
)
def test_prefetch_budget_is_split_between_queues(
    budget: int, queues: int, shares: list[int]
) -> None:
    assert split_prefetch(budget, queues) == shares
    if budget >= queues:
        assert sum(shares) == budget


def test_prefetch_split_needs_positive_numbers() -> None:
    with pytest.raises(ValueError):
        split_prefetch(0, 1)
