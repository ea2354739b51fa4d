"""An app of plain functions only, as most Celery apps are.

Its ``threads``/``solo`` workers hand every call to the pool at once, and the pool
queues those its threads cannot start yet (``ExecutionPool.queues_ahead``); the core
app has ``async def`` tasks, so its workers give every task a slot on the loop
instead. With ``AMQPTASKS_TEST_HOOK_LOG`` set, ``task_prerun`` is recorded there.
"""

from __future__ import annotations

import os
import time
from typing import Any

from amqptasks import App, SoftTimeLimitExceeded, signals
from tests.integration.apps.core import _append

app = App("itest-plain")


@app.task
def record(ledger: str, token: str) -> str:
    _append(ledger, token)
    return token


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task
def span(ledger: str, token: str, seconds: float) -> str:
    """``start``/``end`` lines around a sleep: how many ran at once shows in the ledger."""
    _append(ledger, f"start {token}")
    time.sleep(seconds)
    _append(ledger, f"end {token}")
    return token


@app.task
def wait_for_flag(flag: str, ledger: str, token: str) -> str:
    """Block while ``flag`` exists."""
    _append(ledger, f"start {token}")
    while os.path.exists(flag):
        time.sleep(0.02)
    return token


@app.task(soft_time_limit=0.5)
def soft_limited(ledger: str, token: str) -> str:
    """Sleep in short steps until the soft limit interrupts it; record after how long."""
    started = time.monotonic()
    try:
        while True:
            time.sleep(0.01)
    except SoftTimeLimitExceeded:
        _append(ledger, f"{token} {time.monotonic() - started:.2f}")
        return token


_HOOK_LOG = os.environ.get("AMQPTASKS_TEST_HOOK_LOG")
if _HOOK_LOG:

    @signals.task_prerun.connect
    def _prerun(sender: Any, task_id: str, **kwargs: Any) -> None:
        _append(str(_HOOK_LOG), f"task_prerun {task_id}")
