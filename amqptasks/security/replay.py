"""Refuse stale and replayed signed messages, with bounded memory (pure).

A signature is fresh for ``window`` seconds after it was made or after the
message's ETA, whichever is later (a task delayed for a day is signed a day
before it runs). Within that time each signature is remembered: a second
delivery of the same signed message is a replay - unless the broker marks it
``redelivered`` (it was given back unsettled, by this or another consumer;
a publisher cannot set that flag). A legitimate copy (a retry, a delayed copy)
is signed again, so its signature is new.

At most ``size`` signatures are kept, the oldest forgotten first. The memory is
per worker process: a copy delivered to another process within the window is
not caught there (see docs/security.md).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from amqptasks import constants
from amqptasks.exceptions import BadSignature
from amqptasks.protocol.envelope import parse_time

if TYPE_CHECKING:
    from amqptasks.security.signing import Verified

__all__ = ["ReplayGuard"]


def _eta_seconds(eta: object) -> float | None:
    if isinstance(eta, bytes):  # a raw header, not decoded yet
        eta = eta.decode("utf-8", "replace")
    moment = parse_time(eta) if isinstance(eta, str) else None
    return moment.timestamp() if moment is not None else None


class ReplayGuard:
    """The freshness check and the memory of signatures seen (see the module docstring)."""

    def __init__(self, window: float, skew: float, size: int) -> None:
        self.window = window
        self.skew = skew
        self.size = size
        #: Signature -> when it may be forgotten (seconds since 1970), oldest first.
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def check(
        self,
        verified: Verified,
        *,
        eta: object = None,
        redelivered: bool = False,
        now: float | None = None,
    ) -> None:
        """Accept ``verified`` once, while it is fresh; remember it.

        Raises:
            BadSignature: ``replayed`` (seen before, or too old), or
                ``bad-signature`` (signed in the future, beyond the clock skew).
        """
        current = time.time() if now is None else now
        signed = verified.signed_at / 1000
        if signed > current + self.skew:
            raise BadSignature(
                f"signed {signed - current:.0f}s in the future (allowed clock skew {self.skew:g}s)"
            )
        start = max(signed, _eta_seconds(eta) or 0.0)
        if current - start > self.window:
            raise BadSignature(
                f"signed {current - signed:.0f}s ago, outside the replay window ({self.window:g}s)",
                reason=constants.REASON_REPLAYED,
            )
        self._forget(current)
        key = verified.signature
        if key in self._seen:
            if redelivered:
                return
            raise BadSignature(
                "this signed message was delivered before (a replay)",
                reason=constants.REASON_REPLAYED,
            )
        self._seen[key] = start + self.window
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)

    def _forget(self, now: float) -> None:
        seen = self._seen
        while seen:
            key, until = next(iter(seen.items()))
            if until > now:
                return
            del seen[key]
