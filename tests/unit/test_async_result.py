"""AsyncResult: the handle a user polls or waits on."""

from __future__ import annotations

import threading

import pytest

from amqptasks import AsyncResult
from amqptasks.exceptions import ConfigError, ResultTimeout
from amqptasks.results import states
from amqptasks.results.buffer import ResultBuffer
from amqptasks.results.meta import ResultMeta, encode_exception

TB = 'Traceback (most recent call last):\n  File "tasks.py", line 9, in div\nZeroDivisionError\n'


@pytest.fixture
def buffer() -> ResultBuffer:
    return ResultBuffer()


def _fail(buffer: ResultBuffer, task_id: str, exc: BaseException) -> None:
    buffer.deposit(ResultMeta(task_id, states.FAILURE, result=encode_exception(exc), traceback=TB))


def test_pending_before_anything(buffer: ResultBuffer) -> None:
    result = AsyncResult("tid", store=buffer, task_name="proj.add")
    assert result.state == "PENDING"
    assert result.status == "PENDING"
    assert result.ready() is False
    assert result.successful() is False
    assert result.failed() is False
    assert result.result is None
    assert result.traceback is None
    assert result.task_id == result.id == "tid"


def test_started_is_not_ready(buffer: ResultBuffer) -> None:
    buffer.deposit(ResultMeta("tid", states.STARTED))
    result = AsyncResult("tid", store=buffer)
    assert result.state == "STARTED"
    assert result.ready() is False


def test_success(buffer: ResultBuffer) -> None:
    buffer.deposit(ResultMeta("tid", states.SUCCESS, result={"sum": 5}))
    result = AsyncResult("tid", store=buffer)
    assert result.state == "SUCCESS"
    assert result.ready() is True
    assert result.successful() is True
    assert result.failed() is False
    assert result.result == {"sum": 5}
    assert result.get(timeout=1) == {"sum": 5}


def test_failure_properties(buffer: ResultBuffer) -> None:
    _fail(buffer, "tid", ValueError("bad input"))
    result = AsyncResult("tid", store=buffer)
    assert result.state == "FAILURE"
    assert result.ready() is True
    assert result.successful() is False
    assert result.failed() is True
    assert isinstance(result.result, ValueError)
    assert str(result.result) == "bad input"
    assert result.traceback == TB


def test_get_raises_the_remote_exception(buffer: ResultBuffer) -> None:
    _fail(buffer, "tid", ValueError("bad input"))
    with pytest.raises(ValueError, match="bad input") as info:
        AsyncResult("tid", store=buffer).get(timeout=1)
    assert info.value.remote_traceback == TB  # type: ignore[attr-defined]


def test_get_without_propagation_returns_the_exception(buffer: ResultBuffer) -> None:
    _fail(buffer, "tid", KeyError("sku"))
    value = AsyncResult("tid", store=buffer).get(timeout=1, propagate=False)
    assert isinstance(value, KeyError)
    assert value.args == ("sku",)


def test_revoked_counts_as_failed(buffer: ResultBuffer) -> None:
    buffer.deposit(ResultMeta("tid", states.REVOKED, result=encode_exception(RuntimeError("x"))))
    result = AsyncResult("tid", store=buffer)
    assert result.ready() is True
    assert result.failed() is True
    with pytest.raises(RuntimeError):
        result.get(timeout=1)


def test_get_waits_for_a_result_from_another_thread(buffer: ResultBuffer) -> None:
    timer = threading.Timer(0.05, buffer.deposit, [ResultMeta("tid", states.SUCCESS, result=7)])
    timer.start()
    try:
        assert AsyncResult("tid", store=buffer).get(timeout=10) == 7
    finally:
        timer.join()


def test_get_times_out(buffer: ResultBuffer) -> None:
    with pytest.raises(ResultTimeout):
        AsyncResult("tid", store=buffer).get(timeout=0.05)


async def test_aget(buffer: ResultBuffer) -> None:
    timer = threading.Timer(0.05, buffer.deposit, [ResultMeta("tid", states.SUCCESS, result=8)])
    timer.start()
    try:
        assert await AsyncResult("tid", store=buffer).aget(timeout=10) == 8
    finally:
        timer.join()


async def test_aget_raises_the_remote_exception(buffer: ResultBuffer) -> None:
    _fail(buffer, "tid", ZeroDivisionError("division by zero"))
    with pytest.raises(ZeroDivisionError):
        await AsyncResult("tid", store=buffer).aget(timeout=1)


def test_ignored_result_cannot_be_waited_for() -> None:
    result = AsyncResult("tid", store=None, task_name="proj.fire")
    assert result.state == "PENDING"
    with pytest.raises(ConfigError, match="ignore_result"):
        result.get(timeout=1)


async def test_ignored_result_cannot_be_awaited() -> None:
    with pytest.raises(ConfigError, match="ignore_result"):
        await AsyncResult("tid", store=None).aget(timeout=1)


def test_repr_names_task_id_and_state(buffer: ResultBuffer) -> None:
    text = repr(AsyncResult("tid-1", store=buffer, task_name="proj.add"))
    assert "proj.add" in text
    assert "tid-1" in text
    assert "PENDING" in text
