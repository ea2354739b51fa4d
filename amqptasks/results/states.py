"""Task states, as Celery names them."""

from __future__ import annotations

from typing import Final

PENDING: Final = "PENDING"
RECEIVED: Final = "RECEIVED"
STARTED: Final = "STARTED"
RETRY: Final = "RETRY"
SUCCESS: Final = "SUCCESS"
FAILURE: Final = "FAILURE"
REVOKED: Final = "REVOKED"

#: States after which nothing more will be sent about a task.
READY_STATES: Final = frozenset({SUCCESS, FAILURE, REVOKED})
#: States that mean the task did not succeed.
EXCEPTION_STATES: Final = frozenset({FAILURE, REVOKED, RETRY})
