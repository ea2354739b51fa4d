"""Signals: connect, filter by sender, disconnect, and a failing receiver is only logged."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest

from amqptasks import signals
from amqptasks.signals import Signal

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def signal() -> Iterator[Signal]:
    yield Signal("test_signal", ("value",))


class _Task:
    name = "proj.add"


def test_connect_as_decorator_and_send(signal: Signal) -> None:
    calls: list[tuple[object, dict[str, Any]]] = []

    @signal.connect
    def receiver(sender: object, **kwargs: Any) -> None:
        calls.append((sender, kwargs))

    assert receiver.__name__ == "receiver"  # the function stays usable
    signal.send("me", value=1)
    assert calls == [("me", {"value": 1})]
    assert signal.receivers == [receiver]
    assert "receivers=1" in repr(signal)


def test_connecting_twice_calls_once(signal: Signal) -> None:
    calls: list[object] = []

    def receiver(sender: object, **_: Any) -> None:
        calls.append(sender)

    signal.connect(receiver)
    signal.connect(receiver)
    signal.send("x")
    assert calls == ["x"]


def test_sender_filter_matches_object_or_task_name(signal: Signal) -> None:
    task = _Task()
    seen: list[str] = []
    signal.connect(lambda sender, **_: seen.append("by-name"), sender="proj.add")
    signal.connect(lambda sender, **_: seen.append("by-object"), sender=task)
    signal.connect(lambda sender, **_: seen.append("other"), sender="proj.other")
    signal.send(task)
    assert sorted(seen) == ["by-name", "by-object"]
    seen.clear()
    signal.send("proj.add")  # publish signals send the task name
    assert seen == ["by-name"]


def test_disconnect(signal: Signal) -> None:
    calls: list[object] = []

    def receiver(sender: object, **_: Any) -> None:
        calls.append(sender)

    signal.connect(receiver, sender="a")
    assert not signal.disconnect(receiver)  # connected for "a" only
    assert signal.disconnect(receiver, sender="a")
    signal.send("a")
    assert calls == []


def test_failing_receiver_is_logged_and_the_others_run(
    signal: Signal, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    @signal.connect
    def broken(sender: object, **_: Any) -> None:
        raise RuntimeError("hook bug")

    @signal.connect
    def fine(sender: object, **_: Any) -> None:
        calls.append("fine")

    with caplog.at_level(logging.ERROR, logger="amqptasks.signals"):
        signal.send("x")  # does not raise
    assert calls == ["fine"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "signal receiver failed" in errors[0].getMessage()


def test_connect_refuses_a_non_callable(signal: Signal) -> None:
    with pytest.raises(TypeError):
        signal.connect(42)  # type: ignore[call-overload]


def test_the_documented_signals_exist() -> None:
    names = [
        "before_publish",
        "after_publish",
        "task_prerun",
        "task_postrun",
        "task_success",
        "task_failure",
        "task_retry",
        "worker_ready",
        "worker_shutdown",
    ]
    for name in names:
        assert isinstance(getattr(signals, name), Signal)
        assert getattr(signals, name).name == name
    assert sorted(signals.__all__) == sorted([*names, "Signal"])
