"""What a publishing thread holds until the broker confirmed its message."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from amqptasks.transport import errors

if TYPE_CHECKING:
    from amqptasks.protocol.envelope import OutgoingMessage


#: Hands over between a waiter about to block and the thread resolving (held for a moment).
_handover = threading.Lock()


class PendingConfirm:
    """The broker's answer to one publish, resolved once by the I/O thread.

    Lighter than a ``concurrent.futures.Future`` (whose condition variable and
    re-entrant lock cost more than the rest of a pipelined publish): no lock of
    its own until a waiter has to block, which in ``app.batch()`` is rare.
    """

    __slots__ = ("_error", "_lock", "_resolved")

    def __init__(self) -> None:
        self._error: BaseException | None = None
        self._resolved = False
        self._lock: threading.Lock | None = None  # held until resolved, once a waiter blocks

    @classmethod
    def failed(cls, error: BaseException) -> PendingConfirm:
        """An answer that is already in: ``error``."""
        confirm = cls()
        confirm.resolve(error)
        return confirm

    def resolve(self, error: BaseException | None = None) -> None:
        """Record the answer (``None``: confirmed) and wake any waiter; the first answer stands."""
        with _handover:
            if self._resolved:
                return
            self._error = error
            self._resolved = True
            lock = self._lock
        if lock is not None:
            lock.release()

    def done(self) -> bool:
        """Whether the answer is in."""
        return self._resolved

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (``None``: forever); whether the answer is in."""
        if self._resolved:
            return True
        with _handover:
            if self._resolved:
                return True
            lock = self._lock
            if lock is None:
                lock = self._lock = threading.Lock()
                lock.acquire()
        if not lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            return False
        lock.release()  # let any other waiter through too
        return True

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The error, or ``None`` if the message was confirmed.

        Raises:
            TimeoutError: no answer within ``timeout``.
        """
        if not self.wait(timeout):
            raise TimeoutError
        return self._error

    def result(self, timeout: float | None = None) -> None:
        """Return once confirmed; raise the error otherwise.

        Raises:
            TimeoutError: no answer within ``timeout``.
        """
        error = self.exception(timeout)
        if error is not None:
            raise error


def wait_confirm(confirm: PendingConfirm, message: OutgoingMessage, timeout: float) -> None:
    """Wait for a publish's confirm; a timeout becomes :class:`PublishNotConfirmed`.

    Raises:
        Unroutable, PublishNotConfirmed, ConnectionLost, ConfigError: as resolved.
    """
    if not confirm.wait(timeout):
        raise errors.not_confirmed(message, timeout)
    confirm.result()


class ConfirmTracker:
    """Publisher-confirm bookkeeping of one channel: which waiter each delivery tag has.

    Used on the connection's I/O thread only. The broker numbers the messages of
    a channel in confirm mode 1, 2, ... and acks or nacks them, several at once
    with ``multiple``; a mandatory message no queue took is returned first.
    """

    def __init__(self) -> None:
        self.last_tag = 0
        # delivery tag -> waiter; tags only grow, so the dict is in tag order.
        self._pending: dict[int, tuple[PendingConfirm, OutgoingMessage]] = {}
        self._returned: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def restart(self) -> None:
        """A new channel in confirm mode: tags start again at 1 (fail what is pending first)."""
        self.last_tag = 0

    def track(self, confirm: PendingConfirm, message: OutgoingMessage) -> None:
        """``message`` goes out next, as tag :attr:`last_tag` + 1."""
        self.last_tag += 1
        self._pending[self.last_tag] = (confirm, message)

    def returned(self, message_id: str, reply_text: str) -> None:
        """The broker returned this message (its confirm follows)."""
        self._returned[message_id] = reply_text

    def confirmed(self, tag: int, *, multiple: bool, nacked: bool) -> None:
        """Resolve the waiters of a ``basic.ack`` or ``basic.nack``."""
        pending = self._pending
        done: list[int] = []
        if multiple:
            for each in pending:
                if each > tag:
                    break
                done.append(each)
        elif tag in pending:
            done.append(tag)
        returned = self._returned
        for each in done:
            confirm, message = pending.pop(each)
            reply_text = returned.pop(message.message_id, None) if returned else None
            if reply_text is not None:
                confirm.resolve(errors.unroutable(message, reply_text))
            elif nacked:
                confirm.resolve(errors.nacked(message))
            else:
                confirm.resolve()

    def fail_since(self, first_tag: int, error: BaseException) -> None:
        """Fail the waiters from ``first_tag`` on: those messages never left."""
        for each in range(first_tag, self.last_tag + 1):
            entry = self._pending.pop(each, None)
            if entry is not None:
                entry[0].resolve(error)

    def fail_all(self, error: BaseException) -> None:
        """Fail every waiter (the channel or the connection is gone)."""
        pending, self._pending = self._pending, {}
        self._returned.clear()
        for confirm, _message in pending.values():
            confirm.resolve(error)
