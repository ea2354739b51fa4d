"""The extension seam's pure parts: which hooks are called, in what order (#21)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from amqptasks.worker import Extension, Finish, Requeue, Skip
from amqptasks.worker.extension import Hooks, consult, resolved
from amqptasks.worker.rules import standard_rules
from amqptasks.worker.rules.deliveries import read_count

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from amqptasks.worker import Decision, MessageState


class Early(Extension):
    async def on_decoded(self, state: MessageState) -> Decision | None:
        return None

    async def after_run(self, state: MessageState) -> Decision | None:
        return None


class Late(Extension):
    async def after_run(self, state: MessageState) -> Decision | None:
        return None


def test_only_overridden_hooks_are_called_and_after_run_goes_in_reverse() -> None:
    early, late, idle = Early(), Late(), Extension()
    hooks = Hooks([early, idle, late])
    assert hooks.on_decoded == [early.on_decoded]
    assert hooks.on_received == []
    assert hooks.before_settle == []
    assert hooks.after_run == [late.after_run, early.after_run]


def test_the_standard_rules_sit_where_the_lifecycle_says() -> None:
    hooks = Hooks(standard_rules())
    owners = {
        name: [type(hook.__self__).__name__ for hook in getattr(hooks, name)]
        for name in ("on_received", "on_decoded", "before_run", "on_failure", "before_settle")
    }
    assert owners == {
        "on_received": ["DeliveryLimit"],
        "on_decoded": ["Workflows", "Timing", "Dedupe"],
        "before_run": ["RateLimits"],
        "on_failure": ["Retries"],
        "before_settle": ["Workflows", "TaskSignals", "ResultReplies"],
    }
    assert [type(ext).__name__ for ext in hooks.starters] == ["TaskSignals", "ResultReplies"]


@pytest.mark.parametrize(
    ("value", "count"),
    [
        (3, 3),
        ("4", 4),
        (b"5", 5),
        (0, 0),
        (-1, None),
        ("zzz", None),
        (True, None),
        (2.5, None),
        (None, None),
        ([1], None),
    ],
)
def test_a_delivery_count_header_of_any_type_is_read_or_ignored(
    value: object, count: int | None
) -> None:
    assert read_count(value) == count


class _Stub:
    """What a hook reads of a delivery here: nothing."""


def _consulted(hooks: list[Any]) -> Decision | None:
    return asyncio.run(resolved(consult(hooks, _Stub())))  # type: ignore[arg-type]


def test_plain_and_async_hooks_are_consulted_in_order_and_the_first_decision_wins() -> None:
    seen: list[str] = []

    def plain_none(state: MessageState) -> None:
        seen.append("plain")

    async def async_none(state: MessageState) -> None:
        seen.append("async")

    def plain_skip(state: MessageState) -> Decision:
        seen.append("skip")
        return Skip()

    def never(state: MessageState) -> None:
        seen.append("never")

    assert _consulted([plain_none, async_none, plain_none]) is None
    assert seen == ["plain", "async", "plain"]
    seen.clear()
    assert isinstance(_consulted([plain_none, async_none, plain_skip, never]), Skip)
    assert seen == ["plain", "async", "skip"]


def test_a_plain_hook_that_returns_nothing_costs_no_coroutine() -> None:
    def plain_none(state: MessageState) -> None:
        return None

    assert consult([plain_none, plain_none], _Stub()) is None  # type: ignore[arg-type]
    decided = consult([lambda state: Finish()], _Stub())  # type: ignore[arg-type]
    assert isinstance(decided, Finish)


def test_a_plain_hook_that_must_wait_returns_an_awaitable_and_the_rest_follow() -> None:
    seen: list[str] = []

    async def wait_then_nothing() -> None:
        await asyncio.sleep(0)
        seen.append("waited")

    def sometimes_waits(state: MessageState) -> Awaitable[None]:
        return wait_then_nothing()

    def after(state: MessageState) -> Decision:
        seen.append("after")
        return Requeue()

    assert isinstance(_consulted([sometimes_waits, after]), Requeue)
    assert seen == ["waited", "after"]
