"""A call's start hook (DeliveryHandler._on_start): what it runs, and what it keeps alive."""

from __future__ import annotations

import gc
import time
import weakref
from types import SimpleNamespace
from typing import Any

from amqptasks.worker.extension import Extension
from amqptasks.worker.handler import DeliveryHandler
from amqptasks.worker.state import MessageState


class _Delivery:
    headers: dict[str, Any] | None = None
    correlation_id = None
    message_id = None


class _Marker:
    """Something the call's state holds, to see when the state is freed."""


class _Recorder(Extension):
    start_holds_body = False

    def __init__(self) -> None:
        self.starts: list[float | None] = []

    def wants_start(self, state: MessageState) -> bool:
        return True

    def on_start(self, state: MessageState) -> None:
        self.starts.append(state.started_at)


def _handler(*starters: Extension) -> Any:
    return SimpleNamespace(hooks=SimpleNamespace(starters=list(starters)))


def test_the_start_hook_runs_the_extensions_that_want_it() -> None:
    first, second = _Recorder(), _Recorder()
    state = MessageState(_Delivery(), "q", None)  # type: ignore[arg-type]
    hook = DeliveryHandler._on_start(_handler(first, second), state)
    assert hook is not None
    assert hook.holds_body is False
    state.started_at = 123.5  # as the pool writes it, before the hook runs
    hook(123.5)
    assert first.starts == second.starts == [123.5]


def test_the_hook_may_run_in_any_thread_only_when_every_starter_says_so() -> None:
    class AnyThread(_Recorder):
        start_in_any_thread = True

    class HoldsTheBody(_Recorder):
        start_holds_body = True

    state = MessageState(_Delivery(), "q", None)  # type: ignore[arg-type]
    both = DeliveryHandler._on_start(_handler(AnyThread(), AnyThread()), state)
    assert both is not None and both.in_any_thread and not both.holds_body
    mixed = DeliveryHandler._on_start(_handler(AnyThread(), HoldsTheBody()), state)
    assert mixed is not None and not mixed.in_any_thread and mixed.holds_body


def test_no_extension_wanting_the_start_makes_no_hook() -> None:
    class Uninterested(_Recorder):
        def wants_start(self, state: MessageState) -> bool:
            return False

    state = MessageState(_Delivery(), "q", None)  # type: ignore[arg-type]
    assert DeliveryHandler._on_start(_handler(Uninterested()), state) is None


def test_a_finished_calls_state_is_freed_without_the_garbage_collector() -> None:
    # A reference cycle through the hook would keep each call's whole state (message,
    # delivery, outcome) until a collection: with events on, that was most of their cost.
    recorder = _Recorder()
    gc.collect()
    gc.disable()
    try:
        state = MessageState(_Delivery(), "q", None)  # type: ignore[arg-type]
        marker = _Marker()
        state.note("marker", marker)
        freed = weakref.ref(marker)
        hook = DeliveryHandler._on_start(_handler(recorder), state)
        assert hook is not None
        hook(time.time())
        del marker, state, hook
        assert freed() is None
    finally:
        gc.enable()
    assert len(recorder.starts) == 1
