"""Helpers shared by both interop apps (no Celery or amqptasks imports here)."""

from __future__ import annotations

import json
import os
from typing import Any


class Inventory:
    """A namespace, so that its exception's ``__qualname__`` has a dot."""

    class OutOfStock(Exception):
        """Raised by ``interop.fail_nested`` on both sides."""


def amqptasks_queue_arguments(name: str) -> dict[str, str]:
    """The ``x-*`` arguments amqptasks declares a (classic) work queue with.

    A Celery app that shares a queue with amqptasks must declare it with exactly
    these, or whichever side declares second gets 406 PRECONDITION_FAILED.
    """
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{name}.dlq"}


def write_ledger(path: str, info: dict[str, Any]) -> None:
    """Write ``info`` as JSON to ``path`` atomically (readers never see half a file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump(info, handle)
    os.replace(tmp, path)
