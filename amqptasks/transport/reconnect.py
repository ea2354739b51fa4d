"""How long to wait before connecting again, when a silent peer counts as dead, and how
an outage is reported.

Both transports use these numbers: the async one through
:class:`amqptasks.transport.robust.RobustConnection` and the worker's
:class:`amqptasks.transport.consumer.ConsumerLink`, the sync one through its
heartbeat checker. The two reconnecting connections report outages through
:class:`Outages`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from amqptasks.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable

log = get_logger(__name__)

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


def missed_heartbeats(heartbeat: float) -> str:
    """Why a connection with ``heartbeat`` was given up on after silence."""
    return f"no frame from the broker for {dead_peer_timeout(heartbeat):g}s (missed heartbeats)"


class Outages:
    """One warning when a connection is lost, one line when it is back (not per attempt).

    Args:
        where: ``host:port/vhost`` (never the credentials).
        loud: Warning and info level; else both at debug (a connection whose
            outages another connection of the same process reports).

    Attributes:
        count: Outages since it was created (each may take many attempts).
    """

    def __init__(self, where: str, *, loud: bool = True) -> None:
        self.where = where
        self.count = 0
        self._loud = loud
        self._since: float | None = None

    def lost(self, error: str) -> None:
        """The connection was lost, or an attempt to restore it failed."""
        if self._since is not None:
            return
        self._since = time.monotonic()
        self.count += 1
        report = log.warning if self._loud else log.debug
        report(
            "broker connection lost; reconnecting in the background", broker=self.where, error=error
        )

    def restored(self, attempts: int) -> None:
        """The connection is back after ``attempts`` attempts."""
        if self._since is None:
            return
        report = log.info if self._loud else log.debug
        report(
            "broker connection restored",
            broker=self.where,
            down_for=round(time.monotonic() - self._since, 2),
            attempts=attempts,
        )
        self._since = None
