"""Value types a task call carries, shared by the publishing side and the worker (pure).

They sit below both (as httpx's ``_config.py`` does): ``task.py`` and
``publishing.py`` check options with them, the worker applies them.
"""

from __future__ import annotations

from amqptasks.policies.limits import (
    TimeLimits,
    check_priority,
    check_time_limits,
    parse_rate_limit,
    resolve_time_limits,
)
from amqptasks.policies.retry import Decision, FailureAction, RetryPolicy

__all__ = [
    "Decision",
    "FailureAction",
    "RetryPolicy",
    "TimeLimits",
    "check_priority",
    "check_time_limits",
    "parse_rate_limit",
    "resolve_time_limits",
]
