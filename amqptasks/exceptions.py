"""The amqptasks exception tree.

Every error raised by amqptasks derives from :class:`AmqptasksError`; pika and
aiormq errors are translated at the transport boundary (``raise ... from exc``)
so callers never need to import a client library to catch a broker problem::

    AmqptasksError
     ├── ConfigError                 bad setting, URL, option or serializer name
     ├── BrokerError                 anything the broker or the network did
     │    ├── BrokerUnreachable      TCP connect / handshake failed or timed out
     │    ├── AuthenticationFailed   the broker refused the login
     │    ├── TLSError               TLS failed: certificate, host name, or a TLS/plain port mix-up
     │    ├── ConnectionLost         an open connection went away
     │    └── ChannelError           the broker closed a channel or refused a frame
     │         ├── TopologyMismatch      406: exists with other arguments
     │         ├── NotFound              404: no such queue or exchange
     │         ├── AccessRefused         403: the user lacks a permission
     │         ├── PublishNotConfirmed   the broker nacked or did not confirm in time
     │         │    └── Unroutable       mandatory publish matched no queue
     │         └── BatchPublishError     some messages of a batch were not confirmed
     ├── MessageError                a message that cannot be run
     │    ├── DecodeError            body or headers cannot be decoded
     │    ├── BadSignature           signature missing, wrong, unknown or replayed
     │    └── UnknownTask            no task registered under that name
     └── TaskError                   about running a task or waiting for it
          ├── Retry                  raised by a task to ask for a retry
          ├── Reject                 raised by a task to dead-letter its message
          ├── SoftTimeLimitExceeded  raised inside a task at its soft time limit
          ├── TimeLimitExceeded      a task ran past its hard time limit and was stopped
          ├── WorkerLost             the process running a task died (SIGKILL, OOM)
          ├── Terminated             a running task was stopped on purpose (revoke, terminate)
          ├── ResultTimeout          ``get(timeout=)`` ran out
          ├── RemoteTaskError        fallback for a remote exception type we cannot rebuild
          └── ChordError             a chord's member failed: its body is not called

Errors carry the host, queue and message id they are about, never a password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amqptasks.constants import REASON_BAD_SIGNATURE, REASON_DECODE_ERROR

if TYPE_CHECKING:
    from collections.abc import Sequence


class AmqptasksError(Exception):
    """Root of every error raised by amqptasks."""


class ConfigError(AmqptasksError, ValueError):
    """A setting, URL, option or name is wrong; the message says which and why."""


class BrokerError(AmqptasksError):
    """The broker or the network refused or failed an operation."""


class BrokerUnreachable(BrokerError):
    """No AMQP connection could be opened (refused, unresolvable, timed out)."""


class AuthenticationFailed(BrokerError):
    """The broker refused the username/password (or the vhost access)."""


class TLSError(BrokerError):
    """TLS to the broker failed: an untrusted, expired or misnamed certificate on either
    side, a client key that does not load, or TLS and plain AMQP mixed up on a port.

    Not retried by a starting worker: waiting does not fix a certificate.
    """


class ConnectionLost(BrokerError):
    """An established connection was closed or reset underneath an operation."""


class ChannelError(BrokerError):
    """The broker closed a channel with an AMQP reply code.

    Attributes:
        reply_code: The AMQP reply code (404, 406, 403, ...), or 0 if none.
        reply_text: The broker's explanation.
    """

    def __init__(self, message: str, *, reply_code: int = 0, reply_text: str = "") -> None:
        super().__init__(message)
        self.reply_code = reply_code
        self.reply_text = reply_text


class TopologyMismatch(ChannelError):
    """A queue or exchange exists with other arguments than the ones wanted (406)."""


class NotFound(ChannelError):
    """A queue or exchange does not exist (404)."""


class AccessRefused(ChannelError):
    """The user lacks the permission for this operation (403)."""


class PublishNotConfirmed(ChannelError):
    """The broker nacked a publish, or did not confirm it in time.

    Attributes:
        exchange: Exchange the message was published to ("" is the default exchange).
        routing_key: Routing key used.
        message_id: The message (task) id.
    """

    def __init__(
        self, message: str, *, exchange: str = "", routing_key: str = "", message_id: str = ""
    ) -> None:
        super().__init__(message)
        self.exchange = exchange
        self.routing_key = routing_key
        self.message_id = message_id


class Unroutable(PublishNotConfirmed):
    """A mandatory publish was returned: no queue is bound for that routing key."""


class BatchPublishError(ChannelError):
    """Some messages of a publishing batch were not confirmed.

    Attributes:
        failures: The per-message errors, in publishing order.
    """

    def __init__(self, failures: Sequence[PublishNotConfirmed | BrokerError]) -> None:
        first = failures[0] if failures else None
        super().__init__(
            f"{len(failures)} message(s) of the batch were not confirmed; first: {first}"
        )
        self.failures = list(failures)


class MessageError(AmqptasksError):
    """A delivered message cannot be run."""


class DecodeError(MessageError):
    """A body or header could not be decoded.

    Attributes:
        raw: The raw body (possibly truncated by the caller for display).
        content_type: The content type the message declared.
        reason: Why, as a worker writes it in a dead letter's ``x-amqptasks-reason``
            (``decode-error``, ``bad-message``, ``too-large``).
    """

    def __init__(
        self,
        message: str,
        *,
        raw: bytes = b"",
        content_type: str = "",
        reason: str = REASON_DECODE_ERROR,
    ) -> None:
        super().__init__(message)
        self.raw = raw
        self.content_type = content_type
        self.reason = reason


class BadSignature(MessageError):
    """A message's signature is missing, unknown, wrong or stale (see docs/security.md).

    A worker dead-letters such a message without running it (``reason``
    ``bad-signature``, or ``replayed`` for one seen before or signed longer ago
    than the replay window); ``.get()`` raises it for a task refused so, and for
    a result that is not signed by a known key (``security_verify_results``).
    The text never holds a key or a signature.

    Attributes:
        reason: ``bad-signature`` or ``replayed``, as written in the dead letter.
    """

    def __init__(self, message: str, *, reason: str = REASON_BAD_SIGNATURE) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_bad_signature, (str(self), self.reason))


def _rebuild_bad_signature(message: str, reason: str) -> BadSignature:
    return BadSignature(message, reason=reason)


class UnknownTask(MessageError):
    """No task is registered under the given name.

    ``args`` is ``(name,)`` so that the error rebuilds from a result message
    (Celery does ``UnknownTask(*exc_message)``).

    Attributes:
        name: The task name that was asked for.
        suggestions: Registered names close to it.
    """

    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        super().__init__(name)
        self.name = name
        self.suggestions = list(suggestions)

    def __str__(self) -> str:
        hint = (
            f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?"
            if self.suggestions
            else ""
        )
        return f"no task registered as {self.name!r}{hint}"


class TaskError(AmqptasksError):
    """Base of errors about running a task or waiting for its result."""


class Retry(TaskError):
    """Raised by a task to ask for another attempt.

    Args:
        exc: The exception that caused the retry, if any.
        countdown: Seconds to wait before the next attempt.
        max_retries: Override the task's ``max_retries`` for this decision.
    """

    def __init__(
        self,
        message: str = "",
        *,
        exc: BaseException | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
    ) -> None:
        super().__init__(message or (f"retry: {exc!r}" if exc else "retry requested"))
        self.exc = exc
        self.countdown = countdown
        self.max_retries = max_retries


class Reject(TaskError):
    """Raised by a task to send its message to the dead-letter queue without retrying."""


class SoftTimeLimitExceeded(TaskError):
    """Raised inside a running task when its soft time limit has passed.

    The task may catch it to clean up (and even return normally); left
    uncaught it fails the task like any other exception. See the worker
    documentation for where and when each pool raises it.
    """

    def __init__(self, message: str = "soft time limit exceeded") -> None:
        # A default message: a thread receives it as a class, raised without arguments.
        super().__init__(message)


class TimeLimitExceeded(TaskError):
    """A task ran longer than its hard time limit and was stopped (or abandoned).

    The worker reports it as the task's failure (or retries it, if the task's
    retry options name it).
    """

    def __init__(self, message: str = "hard time limit exceeded") -> None:
        super().__init__(message)


class WorkerLost(TaskError):
    """The child process running a task died before it answered (SIGKILL, OOM killer).

    The worker puts the message back in its queue (it counts as a delivery),
    except for ``acks_early`` tasks, whose callers get this error as the result.
    """

    def __init__(self, message: str = "the process running the task died") -> None:
        super().__init__(message)


class Terminated(TaskError):
    """A running task was stopped on purpose: ``revoke(id, terminate=True)``.

    The worker reports it REVOKED and acks its message: it is not run again.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum} (revoked with terminate)")
        #: The signal its pool process was sent.
        self.signum = signum

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.signum,))


class ResultTimeout(TaskError, TimeoutError):
    """``AsyncResult.get(timeout=...)`` ran out before the task finished."""


class RemoteTaskError(TaskError):
    """A task failed remotely with an exception type that cannot be rebuilt locally.

    Attributes:
        exc_type: The remote exception's type name, e.g. ``"KeyError"``.
        exc_module: The module the type lives in.
    """

    def __init__(self, message: str, *, exc_type: str, exc_module: str = "") -> None:
        super().__init__(f"{exc_type}: {message}")
        self.exc_type = exc_type
        self.exc_module = exc_module


class ChordError(TaskError):
    """A member of a chord failed (after its retries), so its body was not called.

    What ``.get()`` on the chord's result raises; the message names the member.
    """
