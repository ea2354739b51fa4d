"""Worker extensions used by tests/integration/test_extensions.py.

Each writes what it saw to $AMQPTASKS_TEST_EXT_LOG, one line per event.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from amqptasks.exceptions import ConnectionLost, TaskError
from amqptasks.worker import CannotSettle, DeadLetter, Defer, Extension, Finish

if TYPE_CHECKING:
    from amqptasks.worker import Decision, MessageState, WorkerContext

LOG = os.environ.get("AMQPTASKS_TEST_EXT_LOG", os.devnull)
#: The task name :class:`CountAndForbid` refuses.
FORBIDDEN = "tests.integration.apps.core.fail"


def _write(line: str) -> None:
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class CountAndForbid(Extension):
    """Counts deliveries and dead-letters every call of :data:`FORBIDDEN`."""

    def __init__(self) -> None:
        self.received = 0

    async def on_worker_start(self, worker: WorkerContext) -> None:
        _write(f"start {worker.hostname} prefetch={worker.options.prefetch_count}")

    async def on_worker_stop(self, worker: WorkerContext) -> None:
        _write(f"stop received={self.received}")

    def on_received(self, state: MessageState) -> Decision | None:  # a plain hook
        self.received += 1
        _write(f"received {self.received}")
        return None

    async def on_decoded(self, state: MessageState) -> Decision | None:
        assert state.message is not None
        if state.message.task == FORBIDDEN:
            return DeadLetter("forbidden", TaskError(f"{FORBIDDEN} is not run here"))
        return None

    def before_settle(self, state: MessageState, decision: Decision) -> None:
        _write(f"settle {state.task_id} {type(decision).__name__}")


class Broken(Extension):
    """Raises before the run for calls whose first argument is "boom", after it for all."""

    async def before_run(self, state: MessageState) -> Decision | None:
        assert state.message is not None
        if state.message.args[:1] == ["boom"]:
            raise RuntimeError("a broken extension")
        return None

    async def after_run(self, state: MessageState) -> Decision | None:
        raise RuntimeError("broken after the run")


class DeferOnce(Extension):
    """Sends every call back through the delay levels once (2 s) before it runs."""

    def before_run(self, state: MessageState) -> Decision | None:
        headers = state.delivery.headers or {}
        if headers.get("x-test-deferred"):
            return None
        _write(f"deferred {state.task_id}")
        return Defer(2, {"x-test-deferred": 1})


class CannotFinish(Extension):
    """Every success of a call whose id starts with "stuck" cannot be settled: what
    must precede its ack fails as a broker failure would."""

    async def before_settle(self, state: MessageState, decision: Decision) -> None:
        assert state.message is not None
        if state.message.id.startswith("stuck") and isinstance(decision, Finish):
            _write(f"cannot {state.task_id}")
            raise CannotSettle(ConnectionLost("the next step could not be published"))
