"""When a call may run: not after its ``expires``, not before its ``eta``.

A message whose ETA is ahead was sent by a producer that expects the worker to
hold it (Celery does): it goes back to the broker's delay levels instead. One
further ahead than the delay levels reach (about 8.5 years) is dead-lettered as
``bad-eta`` rather than bounced between worker and queue.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from amqptasks import constants
from amqptasks.exceptions import TaskError
from amqptasks.logging import get_logger
from amqptasks.results import states
from amqptasks.topology.delays import MAX_DELAY
from amqptasks.worker.decisions import DeadLetter, Defer, Skip
from amqptasks.worker.execution import is_expired, parse_time
from amqptasks.worker.extension import Extension
from amqptasks.worker.outcome import Outcome

if TYPE_CHECKING:
    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.state import MessageState

log = get_logger(__name__)

#: A message whose ETA is less than this far ahead runs now (clock skew, rounding).
EARLY_TOLERANCE = 0.5


def seconds_until(eta: str | None, now: dt.datetime | None = None) -> float:
    """Seconds from ``now`` to the ISO 8601 ``eta`` (0 when absent)."""
    when = parse_time(eta)
    if when is None:
        return 0.0
    return (when - (now or dt.datetime.now(dt.timezone.utc))).total_seconds()


class Timing(Extension):
    """Expired calls are not run (REVOKED); early ones wait in the delay levels."""

    def on_decoded(self, state: MessageState) -> Decision | None:
        message = state.message
        assert message is not None
        if message.expires is not None and is_expired(message):
            log.warning(
                "task expired before it ran; not running it",
                task_id=message.id,
                task=message.task,
                expires=message.expires,
            )
            expired = TaskError(f"task {message.task} ({message.id}) expired at {message.expires}")
            return Skip(report=Outcome(states.REVOKED, exception=expired))
        if message.eta is None:
            return None
        remaining = seconds_until(message.eta)
        if remaining <= EARLY_TOLERANCE:
            return None
        if remaining > MAX_DELAY:
            error = TaskError(
                f"task {message.task} ({message.id}) has eta {message.eta}, further ahead than "
                f"the delay levels reach ({MAX_DELAY} s, about 8.5 years)"
            )
            return DeadLetter(constants.REASON_BAD_ETA, error)
        return Defer(remaining)
