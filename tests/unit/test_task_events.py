"""Task events built per call and sent per batch (amqptasks.control.task_events)."""

from __future__ import annotations

import signal
from typing import Any

from amqptasks.control.events import EventClock, EventStamp
from amqptasks.control.task_events import REVOKED, TaskEvents
from amqptasks.exceptions import Terminated
from amqptasks.protocol.envelope import build_task_message, parse_task_message
from amqptasks.worker.decisions import DeadLetter, Decision, Finish, Requeue, RetryLater, Skip
from amqptasks.worker.outcome import Outcome
from amqptasks.worker.state import MessageState


class _Delivery:
    headers: dict[str, Any] | None = None
    correlation_id = None
    message_id = None


def _state(task_id: str, *, args: tuple[Any, ...] = (2, 3)) -> MessageState:
    out = build_task_message(
        task="proj.add", task_id=task_id, args=args, kwargs={}, exchange="", routing_key="q"
    )
    state = MessageState(_Delivery(), "q", None)  # type: ignore[arg-type]
    state.message = parse_task_message(
        out.body, headers=out.headers, content_type=out.content_type, accept_content=("json",)
    )
    return state


def _buffer(batch: int = 100) -> tuple[TaskEvents, list[int]]:
    firsts: list[int] = []
    buffer = TaskEvents(
        EventStamp("w1@host", EventClock()),
        send_soon=lambda: firsts.append(1),
        send_now=lambda: firsts.append(0),
        batch=batch,
    )
    return buffer, firsts


def _settle(buffer: TaskEvents, state: MessageState, decision: Decision, when: float) -> None:
    assert state.message is not None
    buffer.settled(state, state.message.id, decision, when)


def test_a_call_that_runs_gives_received_started_succeeded_in_order() -> None:
    buffer, firsts = _buffer()
    state = _state("id-1")
    buffer.received(state)
    state.started_at = state.received_at + 0.5  # as the pool sets it
    state.outcome = Outcome.success(5)
    _settle(buffer, state, Finish(report=state.outcome), state.received_at + 2.0)

    events = buffer.take()

    assert [e["type"] for e in events] == ["task-received", "task-started", "task-succeeded"]
    assert {e["uuid"] for e in events} == {"id-1"}
    assert all(e["hostname"] == "w1@host" for e in events)
    clocks = [e["clock"] for e in events]
    assert clocks == sorted(clocks) and len(set(clocks)) == 3
    received, started, succeeded = events
    assert received["name"] == "proj.add" and received["args"] == "(2, 3)"
    assert received["timestamp"] == state.received_at
    assert started["timestamp"] == state.started_at
    assert succeeded["timestamp"] == state.received_at + 2.0
    assert succeeded["result"] == "5"
    assert abs(succeeded["runtime"] - 1.5) < 1e-9
    assert firsts == [1]  # one "send soon" per batch
    assert len(buffer) == 0 and buffer.take() == []


def test_each_way_a_call_ends_has_its_event_and_requeues_have_none() -> None:
    buffer, firsts = _buffer()
    failed, retried, revoked, terminated, rejected, requeued = (_state(f"id-{n}") for n in range(6))
    failed.outcome = Outcome.failure(ValueError("boom"))
    _settle(buffer, failed, DeadLetter("failed", ValueError("boom")), 1.0)
    _settle(buffer, retried, RetryLater(countdown=1.0, error=KeyError("k")), 2.0)
    revoked.note(REVOKED, True)
    _settle(buffer, revoked, Skip(), 3.0)
    terminated.outcome = Outcome.failure(Terminated(int(signal.SIGUSR1)))
    _settle(buffer, terminated, Skip(), 4.0)
    _settle(buffer, rejected, DeadLetter("bad-message", ValueError("x")), 5.0)
    _settle(buffer, requeued, Requeue(), 6.0)

    events = {e["uuid"]: e for e in buffer.take()}

    assert events["id-0"]["type"] == "task-failed"
    assert events["id-0"]["exception"] == "ValueError('boom')"
    assert events["id-1"]["type"] == "task-retried"
    assert events["id-1"]["exception"] == "KeyError('k')"
    assert events["id-2"]["type"] == "task-revoked"
    assert events["id-2"]["expired"] is False and events["id-2"]["terminated"] is False
    assert events["id-3"]["type"] == "task-revoked"
    assert events["id-3"]["terminated"] is True and events["id-3"]["expired"] is False
    assert events["id-3"]["signum"] == int(signal.SIGUSR1)
    assert events["id-4"]["type"] == "task-rejected"
    assert events["id-4"]["requeue"] is False
    assert "id-5" not in events  # back to its queue: Celery sends nothing
    assert [events[f"id-{n}"]["timestamp"] for n in range(5)] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert firsts == [1]


def test_notes_after_a_take_ask_to_be_sent_again() -> None:
    buffer, firsts = _buffer()
    buffer.received(_state("a"))
    buffer.received(_state("b"))
    assert [e["uuid"] for e in buffer.take()] == ["a", "b"]
    buffer.received(_state("c"))
    assert firsts == [1, 1]
    assert [e["uuid"] for e in buffer.take()] == ["c"]


def test_a_full_batch_asks_to_be_sent_at_once() -> None:
    buffer, asked = _buffer(batch=3)
    for task_id in ("a", "b"):
        buffer.received(_state(task_id))
    assert asked == [1]  # soon, with the first
    buffer.received(_state("c"))
    assert asked == [1, 0]  # now: three are waiting
    assert len(buffer.take()) == 3


def test_a_call_still_running_as_its_batch_goes_out_is_sent_as_started_once() -> None:
    buffer, asked = _buffer()
    running, waiting = _state("run-1"), _state("wait-1")
    buffer.received(running)
    buffer.received(waiting)
    assert [e["type"] for e in buffer.take()] == ["task-received", "task-received"]

    running.started_at = running.received_at + 0.25  # the pool started it
    started = buffer.take()
    assert [(e["type"], e["uuid"]) for e in started] == [("task-started", "run-1")]
    assert started[0]["timestamp"] == running.started_at
    assert buffer.take() == []  # not twice
    assert list(buffer.unstarted) == ["wait-1"]  # still looked at, as the next batch goes

    running.outcome = Outcome.success(None)
    _settle(buffer, running, Finish(report=running.outcome), running.received_at + 1.0)
    _settle(buffer, waiting, Skip(), running.received_at + 1.0)  # revoked before it started
    ended = buffer.take()
    assert [(e["type"], e["uuid"]) for e in ended] == [
        ("task-succeeded", "run-1"),
        ("task-revoked", "wait-1"),
    ]
    assert buffer.unstarted == {}
    clocks = [e["clock"] for e in started + ended]
    assert clocks == sorted(clocks)
    assert asked == [1, 1]  # "send soon" as the first received and the first ended came
