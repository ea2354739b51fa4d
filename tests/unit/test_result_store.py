"""The result-store seam: AsyncResult reads from any ResultStore, not only the rpc buffer."""

from __future__ import annotations

import pytest

from amqptasks import AsyncResult
from amqptasks.exceptions import ResultTimeout
from amqptasks.results import states
from amqptasks.results.buffer import ResultBuffer
from amqptasks.results.meta import ResultMeta
from amqptasks.results.store import ResultStore


class JoinedResults(ResultStore):
    """As a chord's join will be: the states gathered elsewhere, all known at once."""

    def __init__(self, metas: dict[str, ResultMeta]) -> None:
        self.metas = metas
        self.asked: list[str] = []

    def peek(self, task_id: str) -> ResultMeta | None:
        self.asked.append(f"peek {task_id}")
        return self.metas.get(task_id)

    def get(self, task_id: str, timeout: float | None) -> ResultMeta:
        self.asked.append(f"get {task_id}")
        meta = self.metas.get(task_id)
        if meta is None or meta.status not in states.READY_STATES:
            raise ResultTimeout(f"task {task_id} did not finish within {timeout}s")
        return meta

    async def aget(self, task_id: str, timeout: float | None) -> ResultMeta:
        self.asked.append(f"aget {task_id}")
        return self.metas[task_id]


@pytest.fixture
def joined() -> JoinedResults:
    return JoinedResults(
        {
            "m1": ResultMeta("m1", states.SUCCESS, result=3),
            "m2": ResultMeta("m2", states.STARTED),
        }
    )


def test_async_result_reads_its_state_from_the_store_it_was_given(joined: JoinedResults) -> None:
    assert AsyncResult("m1", store=joined).state == states.SUCCESS
    assert AsyncResult("m2", store=joined).state == states.STARTED
    assert AsyncResult("m3", store=joined).state == states.PENDING
    assert AsyncResult("m1", store=joined).get(timeout=1) == 3
    with pytest.raises(ResultTimeout):
        AsyncResult("m2", store=joined).get(timeout=0)
    assert joined.asked == ["peek m1", "peek m2", "peek m3", "get m1", "get m2"]


async def test_async_result_awaits_through_the_store(joined: JoinedResults) -> None:
    assert await AsyncResult("m1", store=joined).aget(timeout=1) == 3
    assert joined.asked == ["aget m1"]


def test_the_rpc_buffer_is_a_result_store() -> None:
    buffer = ResultBuffer()
    assert isinstance(buffer, ResultStore)
    buffer.deposit(ResultMeta("t", states.SUCCESS, result=1))
    assert buffer.peek("t") == ResultMeta("t", states.SUCCESS, result=1)


def test_the_old_names_still_work_with_a_deprecation_warning() -> None:
    buffer = ResultBuffer()
    buffer.deposit(ResultMeta("t", states.SUCCESS, result=1))
    with pytest.warns(DeprecationWarning, match="store="):
        result = AsyncResult("t", buffer=buffer)
    assert result.get(timeout=1) == 1
    with pytest.warns(DeprecationWarning, match="peek"):
        assert buffer.latest("t") is not None
    with pytest.warns(DeprecationWarning, match="get"):
        assert buffer.wait("t", timeout=0).result == 1


def test_a_store_must_be_given() -> None:
    with pytest.raises(TypeError, match="store="):
        AsyncResult("t")
