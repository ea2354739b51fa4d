"""ResultBuffer: waiting for results deposited by another thread."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING

import pytest

from amqptasks.exceptions import ResultTimeout
from amqptasks.results import states
from amqptasks.results.buffer import ResultBuffer
from amqptasks.results.meta import ResultMeta

if TYPE_CHECKING:
    from collections.abc import Iterator


def _meta(task_id: str, status: str, result: object = None) -> ResultMeta:
    return ResultMeta(task_id=task_id, status=status, result=result)


@pytest.fixture
def later() -> Iterator[list[threading.Thread]]:
    """Run deposits from other threads; every thread is joined at the end of the test."""
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()


def _deposit_later(
    threads: list[threading.Thread], buffer: ResultBuffer, *steps: tuple[float, ResultMeta]
) -> None:
    def run() -> None:
        for delay, meta in steps:
            time.sleep(delay)
            buffer.deposit(meta)

    thread = threading.Thread(target=run, daemon=True)
    threads.append(thread)
    thread.start()


def test_latest_is_none_before_anything() -> None:
    assert ResultBuffer().peek("tid") is None


def test_latest_is_the_newest_state() -> None:
    buffer = ResultBuffer()
    buffer.deposit(_meta("tid", states.STARTED))
    buffer.deposit(_meta("tid", states.SUCCESS, 5))
    latest = buffer.peek("tid")
    assert latest is not None
    assert (latest.status, latest.result) == ("SUCCESS", 5)


def test_wait_returns_at_once_when_already_ready() -> None:
    buffer = ResultBuffer()
    buffer.deposit(_meta("tid", states.SUCCESS, 5))
    assert buffer.get("tid", timeout=0).result == 5


def test_wait_returns_when_another_thread_deposits(later: list[threading.Thread]) -> None:
    buffer = ResultBuffer()
    _deposit_later(later, buffer, (0.05, _meta("tid", states.SUCCESS, 42)))
    started = time.monotonic()
    meta = buffer.get("tid", timeout=10)
    assert meta.result == 42
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("final", [states.SUCCESS, states.FAILURE, states.REVOKED])
def test_intermediate_states_do_not_release_the_waiter(
    later: list[threading.Thread], final: str
) -> None:
    buffer = ResultBuffer()
    _deposit_later(
        later,
        buffer,
        (0.02, _meta("tid", states.RECEIVED)),
        (0.02, _meta("tid", states.STARTED)),
        (0.02, _meta("tid", states.RETRY)),
        (0.1, _meta("tid", final)),
    )
    assert buffer.get("tid", timeout=10).status == final


def test_other_tasks_do_not_release_the_waiter(later: list[threading.Thread]) -> None:
    buffer = ResultBuffer()
    _deposit_later(
        later,
        buffer,
        (0.02, _meta("other", states.SUCCESS, "no")),
        (0.1, _meta("tid", states.SUCCESS, "yes")),
    )
    assert buffer.get("tid", timeout=10).result == "yes"


def test_wait_times_out() -> None:
    buffer = ResultBuffer()
    buffer.deposit(_meta("tid", states.STARTED))
    started = time.monotonic()
    with pytest.raises(ResultTimeout, match="tid"):
        buffer.get("tid", timeout=0.2)
    assert time.monotonic() - started >= 0.2


def test_result_timeout_is_a_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        ResultBuffer().get("tid", timeout=0.01)


async def test_await_ready_released_by_another_thread(later: list[threading.Thread]) -> None:
    buffer = ResultBuffer()
    _deposit_later(
        later,
        buffer,
        (0.02, _meta("tid", states.STARTED)),
        (0.1, _meta("tid", states.SUCCESS, "done")),
    )
    meta = await buffer.aget("tid", timeout=10)
    assert (meta.status, meta.result) == ("SUCCESS", "done")


async def test_await_ready_returns_at_once_when_already_ready() -> None:
    buffer = ResultBuffer()
    buffer.deposit(_meta("tid", states.FAILURE))
    assert (await buffer.aget("tid", timeout=0.5)).status == "FAILURE"


async def test_await_ready_times_out() -> None:
    buffer = ResultBuffer()
    started = time.monotonic()
    with pytest.raises(ResultTimeout, match="tid"):
        await buffer.aget("tid", timeout=0.2)
    assert time.monotonic() - started >= 0.15


async def test_await_ready_does_not_block_the_loop(later: list[threading.Thread]) -> None:
    buffer = ResultBuffer()
    _deposit_later(later, buffer, (0.2, _meta("tid", states.SUCCESS)))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.ensure_future(tick())
    try:
        await buffer.aget("tid", timeout=10)
    finally:
        ticker.cancel()
    assert ticks >= 5


def test_oldest_results_are_evicted_beyond_maxsize() -> None:
    buffer = ResultBuffer(maxsize=2)
    buffer.deposit(_meta("a", states.SUCCESS))
    buffer.deposit(_meta("b", states.SUCCESS))
    buffer.deposit(_meta("c", states.SUCCESS))
    assert buffer.peek("a") is None
    assert buffer.peek("b") is not None
    assert buffer.peek("c") is not None


def test_a_new_state_refreshes_a_task_in_the_buffer() -> None:
    buffer = ResultBuffer(maxsize=2)
    buffer.deposit(_meta("a", states.STARTED))
    buffer.deposit(_meta("b", states.SUCCESS))
    buffer.deposit(_meta("a", states.SUCCESS))  # a is now the most recent
    buffer.deposit(_meta("c", states.SUCCESS))
    assert buffer.peek("b") is None
    latest_a = buffer.peek("a")
    assert latest_a is not None
    assert latest_a.status == "SUCCESS"
    assert buffer.peek("c") is not None
