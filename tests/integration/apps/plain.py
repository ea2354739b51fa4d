"""An app of plain functions only, as most Celery apps are: some of the core app's.

Its ``threads``/``solo`` workers hand every call to the pool at once, and the pool
queues those its threads cannot start yet (``ExecutionPool.queues_ahead``); the core
app has ``async def`` tasks, so its workers give every task a slot on the loop
instead. With ``AMQPTASKS_TEST_HOOK_LOG`` set, ``task_prerun`` is recorded there.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from amqptasks import App, signals
from tests.integration.apps import core

if TYPE_CHECKING:
    from amqptasks.task import Task

app = App("itest-plain")


def _plain(task: Task[Any, Any], **options: Any) -> Task[Any, Any]:
    """The core ``task``'s function, on this app under a name of its own."""
    return app.task(name=f"{__name__}.{task.fn.__name__}", **options)(task.fn)


record = _plain(core.record)
fail = _plain(core.fail)
#: ``start T`` / ``done T`` lines around a sleep.
slow = _plain(core.slow)
wait_for_flag = _plain(core.wait_for_flag)
#: Naps until its 0.5 s soft limit interrupts it: returns "cleaned up" (or, never
#: interrupted, "not interrupted").
soft_limited = _plain(core.until_soft_limit, soft_time_limit=0.5, time_limit=30)

_HOOK_LOG = os.environ.get("AMQPTASKS_TEST_HOOK_LOG")
if _HOOK_LOG:

    @signals.task_prerun.connect
    def _prerun(sender: Any, task_id: str, **kwargs: Any) -> None:
        core._append(str(_HOOK_LOG), f"task_prerun {task_id}")
