"""Refuse Celery workflow messages (chains, callbacks, chords) whole, until canvas runs them.

Running one step and silently dropping the rest would lose work: the message is
kept whole in the dead-letter queue instead, and the caller is told.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from amqptasks import constants
from amqptasks.exceptions import TaskError
from amqptasks.worker.decisions import DeadLetter
from amqptasks.worker.extension import Extension

if TYPE_CHECKING:
    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.state import MessageState


class UnsupportedWorkflows(Extension):
    """Dead-letter a message whose embed carries a chain, callbacks or a chord."""

    async def on_decoded(self, state: MessageState) -> Decision | None:
        message = state.message
        assert message is not None
        embed = message.embed
        if not embed:
            return None
        if not isinstance(embed, Mapping):
            carried = [type(embed).__name__]
        else:
            carried = sorted(str(k) for k, v in embed.items() if v)
        if not carried:
            return None
        refused = TaskError(
            f"task {message.task} ({message.id}) carries {', '.join(carried)}, "
            f"which amqptasks does not run yet"
        )
        return DeadLetter(constants.REASON_UNSUPPORTED, refused)
