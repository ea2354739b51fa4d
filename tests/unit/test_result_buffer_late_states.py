"""ResultBuffer: a state that arrives late must not replace a final one."""

from __future__ import annotations

import threading

import pytest

from amqptasks.results import states
from amqptasks.results.buffer import ResultBuffer
from amqptasks.results.meta import ResultMeta


def _meta(status: str, result: object = None, task_id: str = "tid") -> ResultMeta:
    return ResultMeta(task_id=task_id, status=status, result=result)


@pytest.mark.parametrize("final", [states.SUCCESS, states.FAILURE, states.REVOKED])
@pytest.mark.parametrize("late", [states.RETRY, states.STARTED, states.PENDING])
def test_a_late_non_final_state_keeps_the_final_one(final: str, late: str) -> None:
    buffer = ResultBuffer()
    buffer.deposit(_meta(final, 5))
    buffer.deposit(_meta(late))
    latest = buffer.peek("tid")
    assert latest is not None
    assert (latest.status, latest.result) == (final, 5)
    waited = buffer.get("tid", timeout=0)
    assert (waited.status, waited.result) == (final, 5)


def test_states_before_the_final_one_are_replaced() -> None:
    buffer = ResultBuffer()
    seen = []
    for status in (states.STARTED, states.RETRY, states.STARTED, states.RETRY):
        buffer.deposit(_meta(status))
        latest = buffer.peek("tid")
        assert latest is not None
        seen.append(latest.status)
    assert seen == ["STARTED", "RETRY", "STARTED", "RETRY"]
    buffer.deposit(_meta(states.SUCCESS, 42))
    assert buffer.get("tid", timeout=0).result == 42


def test_other_tasks_are_not_affected() -> None:
    buffer = ResultBuffer()
    buffer.deposit(_meta(states.SUCCESS, 1, task_id="a"))
    buffer.deposit(_meta(states.RETRY, task_id="b"))
    b = buffer.peek("b")
    assert b is not None and b.status == "RETRY"


def test_a_waiter_gets_the_final_state_even_if_a_retry_comes_after() -> None:
    buffer = ResultBuffer()
    got: list[ResultMeta] = []
    waiter = threading.Thread(target=lambda: got.append(buffer.get("tid", timeout=10)))
    waiter.start()
    buffer.deposit(_meta(states.RETRY))
    buffer.deposit(_meta(states.SUCCESS, "done"))
    buffer.deposit(_meta(states.RETRY))
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert [(m.status, m.result) for m in got] == [("SUCCESS", "done")]
    assert buffer.get("tid", timeout=0).status == "SUCCESS"


async def test_await_ready_returns_the_final_state_after_a_late_retry() -> None:
    buffer = ResultBuffer()
    buffer.deposit(_meta(states.SUCCESS, 3))
    buffer.deposit(_meta(states.STARTED))
    meta = await buffer.aget("tid", timeout=1)
    assert (meta.status, meta.result) == ("SUCCESS", 3)
