"""Translate pika and aiormq errors into the amqptasks tree, without secrets."""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

from amqptasks.exceptions import (
    AccessRefused,
    AuthenticationFailed,
    BrokerError,
    BrokerUnreachable,
    ChannelError,
    ConnectionLost,
    NotFound,
    PublishNotConfirmed,
    TLSError,
    TopologyMismatch,
    Unroutable,
)
from amqptasks.logging import redact
from amqptasks.transport import tls_errors
from amqptasks.transport._causes import exception_chain

if TYPE_CHECKING:
    from amqptasks.config import BrokerURL
    from amqptasks.protocol.envelope import OutgoingMessage

_CHANNEL_ERRORS: dict[int, type[ChannelError]] = {
    403: AccessRefused,
    404: NotFound,
    406: TopologyMismatch,
}


def channel_error(reply_code: int, reply_text: str, context: str = "") -> ChannelError:
    """The :class:`ChannelError` subclass for an AMQP reply code."""
    cls = _CHANNEL_ERRORS.get(reply_code, ChannelError)
    prefix = f"{context}: " if context else ""
    return cls(
        f"{prefix}{reply_text} (AMQP {reply_code})", reply_code=reply_code, reply_text=reply_text
    )


def _innermost(exc: BaseException) -> BaseException:
    seen = exc
    # pika's AMQPConnectionWorkflowFailed keeps the attempts in .exceptions
    inner = getattr(seen, "exceptions", None)
    while inner:
        seen = inner[-1]
        inner = getattr(seen, "exceptions", None)
    nested = getattr(seen, "exception", None)
    if isinstance(nested, BaseException):
        seen = nested
    return seen


def _socket_cause(exc: BaseException) -> OSError | None:
    """The refused or unresolvable socket error somewhere inside pika's or aiormq's wrappers."""
    for item in exception_chain(exc):
        if isinstance(item, ConnectionRefusedError | socket.gaierror):
            return item
        if isinstance(item, OSError) and item.errno == errno.ECONNREFUSED:
            return item
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return redact(text)


def connect_error(exc: BaseException, url: BrokerURL) -> BrokerError:
    """Map a failure to open a connection to a one-line, actionable error."""
    import aiormq.exceptions
    import pika.exceptions

    if isinstance(exc, TLSError):  # a client certificate or CA file that does not load
        return exc
    found = tls_errors.diagnose(exc, url)
    if found is not None:
        return found
    inner = _innermost(exc)
    where = url.redacted()
    auth_types: tuple[type[BaseException], ...] = (
        pika.exceptions.ProbableAuthenticationError,
        pika.exceptions.AuthenticationError,
        aiormq.exceptions.AuthenticationError,
    )
    if (
        isinstance(exc, auth_types)
        or isinstance(inner, auth_types)
        or "ACCESS_REFUSED" in str(inner)
    ):
        return AuthenticationFailed(
            f"broker at {where} refused the login of user {url.username!r}: check the "
            f"username and password (the guest user may only log in from localhost)"
        )
    vhost_types: tuple[type[BaseException], ...] = (pika.exceptions.ProbableAccessDeniedError,)
    if (
        isinstance(exc, vhost_types)
        or isinstance(inner, vhost_types)
        or "NOT_ALLOWED" in str(inner)
        # aiormq keeps only the text of the Connection.Close that answered our
        # Connection.Open: the broker refused the vhost (530 NOT_ALLOWED).
        or ("Connection.OpenOk" in str(inner) and "Connection.Close" in str(inner))
    ):
        user = tls_errors.certificate_user(url) if url.external_login else url.username
        return AuthenticationFailed(
            f"broker at {where}: user {user!r} may not open vhost {url.vhost!r} "
            f"(does it exist, and does the user have permissions on it?)"
        )
    described = str(inner).lower()
    # pika reports a handshake nobody answered (a frozen broker, a black hole) as a
    # "Timeout while setting up AMQP" or an AMQPConnectorStackTimeout.
    if isinstance(inner, TimeoutError) or "timed out" in described or "timeout" in described:
        return BrokerUnreachable(
            f"cannot connect to {where}: no answer within {url.connect_timeout:g}s "
            f"(is the broker up and the port right? set ?connect_timeout= to wait longer)"
        )
    cause = _socket_cause(exc)
    if isinstance(cause, socket.gaierror):
        return BrokerUnreachable(
            f"cannot connect to {where}: host {url.host!r} is unknown (check the broker "
            f"URL: AMQPTASKS_BROKER_URL or -b)"
        )
    if cause is not None:
        return BrokerUnreachable(
            f"cannot connect to {where}: connection refused, no broker listens there "
            f"(start one with `amqptasks dev-node start`, or set AMQPTASKS_BROKER_URL or -b)"
        )
    return BrokerUnreachable(f"cannot connect to {where}: {_describe(inner)}")


def connection_lost(exc: BaseException | None, url: BrokerURL, doing: str) -> ConnectionLost:
    """A :class:`ConnectionLost` saying what was being done when it happened."""
    why = f": {_describe(_innermost(exc))}" if exc is not None else ""
    return ConnectionLost(f"connection to {url.redacted()} lost while {doing}{why}")


def _where(message: OutgoingMessage) -> str:
    return f"exchange {message.exchange or '(default)'!r}, routing key {message.routing_key!r}"


def unroutable(message: OutgoingMessage, reply_text: str = "NO_ROUTE") -> Unroutable:
    """The error for a mandatory message the broker returned."""
    return Unroutable(
        f"message {message.message_id} was returned by the broker ({reply_text}): no queue "
        f"is bound for {_where(message)}",
        exchange=message.exchange,
        routing_key=message.routing_key,
        message_id=message.message_id,
    )


def nacked(message: OutgoingMessage) -> PublishNotConfirmed:
    """The error for a message the broker nacked."""
    return PublishNotConfirmed(
        f"broker nacked message {message.message_id} to {_where(message)}",
        exchange=message.exchange,
        routing_key=message.routing_key,
        message_id=message.message_id,
    )


def not_confirmed(message: OutgoingMessage, timeout: float) -> PublishNotConfirmed:
    """The error for a message not confirmed within ``timeout`` seconds."""
    return PublishNotConfirmed(
        f"broker did not confirm message {message.message_id} to {_where(message)} "
        f"within {timeout:g}s",
        exchange=message.exchange,
        routing_key=message.routing_key,
        message_id=message.message_id,
    )
