"""How long to wait before connecting again, and when a silent peer counts as dead (pure).

Both transports use these numbers: the async one through
:class:`amqptasks.transport.robust.RobustConnection`, the sync one through its
heartbeat checker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

#: Seconds before the second reconnect attempt (the first one is immediate).
RECONNECT_INITIAL_DELAY: Final = 0.5
#: Cap of the wait between two reconnect attempts, in seconds.
RECONNECT_MAX_DELAY: Final = 5.0
#: A peer that sent nothing (not even a heartbeat frame) for this many heartbeat
#: timeouts is dead. RabbitMQ sends a heartbeat frame every half timeout, so this
#: is about four missed frames; RabbitMQ itself gives up on a client after two
#: timeouts. https://www.rabbitmq.com/docs/heartbeats
DEAD_PEER_HEARTBEATS: Final = 2


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter: ``initial, 2x, 4x, ... <= cap``.

    Each wait is drawn between half and all of its step ("equal jitter"), so
    many clients that lost the same broker do not all come back at once, and
    none hammers a broker that is still down.

    Args:
        initial: The wait after the first failed attempt.
        cap: The longest wait.
    """

    initial: float = RECONNECT_INITIAL_DELAY
    cap: float = RECONNECT_MAX_DELAY

    def step(self, failures: int) -> float:
        """The un-jittered wait after ``failures`` failed attempts in a row (0 after none)."""
        if failures <= 0:
            return 0.0
        return min(self.cap, self.initial * 2.0 ** min(failures - 1, 32))

    def delay(self, failures: int, rng: Callable[[], float] = random.random) -> float:
        """The wait after ``failures`` failed attempts: between half and all of :meth:`step`."""
        step = self.step(failures)
        return step / 2 + rng() * step / 2


def dead_peer_timeout(heartbeat: float) -> float:
    """Seconds of silence after which a connection with ``heartbeat`` counts as dead.

    0 when heartbeats are off (then only TCP notices a dead peer, which can take
    many minutes).
    """
    return DEAD_PEER_HEARTBEATS * heartbeat if heartbeat > 0 else 0.0
