"""The core app with a receiver on every signal, writing to $AMQPTASKS_TEST_HOOK_LOG."""

from __future__ import annotations

import os
from typing import Any

from amqptasks import signals
from tests.integration.apps.core import app

__all__ = ["app"]

LOG = os.environ.get("AMQPTASKS_TEST_HOOK_LOG", os.devnull)


def _write(line: str) -> None:
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _task_line(name: str) -> Any:
    def receiver(sender: Any, task_id: str, **kwargs: Any) -> None:
        detail = ""
        if name == "task_postrun":
            detail = f" {kwargs['state']}"
        elif name == "task_failure":
            detail = f" {type(kwargs['exception']).__name__}"
        elif name == "task_retry":
            detail = f" {kwargs['retries']}"
        _write(f"{name} {sender.name} {task_id}{detail}")

    return receiver


for _name in ("task_prerun", "task_postrun", "task_success", "task_failure", "task_retry"):
    getattr(signals, _name).connect(_task_line(_name))


@signals.worker_ready.connect
def _ready(sender: Any, worker: Any, **kwargs: Any) -> None:
    _write(f"worker_ready {worker.hostname} {','.join(worker.consuming)}")


@signals.worker_shutdown.connect
def _shutdown(sender: Any, worker: Any, exit_code: int, **kwargs: Any) -> None:
    _write(f"worker_shutdown {exit_code}")


@signals.task_prerun.connect
def _broken(sender: Any, **kwargs: Any) -> None:
    raise RuntimeError("a broken hook")
