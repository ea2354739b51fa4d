"""The extension seam's pure parts: which hooks are called, in what order (#21)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from amqptasks.worker import Extension
from amqptasks.worker.extension import Hooks
from amqptasks.worker.rules import standard_rules
from amqptasks.worker.rules.deliveries import read_count

if TYPE_CHECKING:
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
