"""aio-pika's robust connection with our reconnect policy.

aio-pika already reconnects and then replays, per channel, the QoS, the
exchanges and queues declared through it, their bindings and the consumers
(with their consumer tags). What it does not do the way a worker needs:

- it waits a fixed ``reconnect_interval`` (5 s) between attempts; we back off
  from 0.5 s to 5 s with jitter (:class:`~amqptasks.transport.reconnect.Backoff`)
  and start again from the bottom after each success;
- it logs every failed attempt; we log one warning when an outage starts and one
  info line with its length when it ends (its own lines stay on the ``aio_pika``
  logger, which the CLI keeps at error level);
- aiormq gives up on a silent peer after ``(heartbeat + 1) x 3`` seconds; we make
  it two heartbeat timeouts, as RabbitMQ does on its side;
- it reconnects to the one URL it was given; given a cluster's nodes
  (:meth:`RobustConnection.fail_over`) we move to the next node after the loss
  and after each failed attempt, round-robin.

Every failure (the loss itself, and each failed attempt after it) goes through
``_on_connection_close``: aio-pika calls it for a closed connection and for a
connection that could not be opened.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import aio_pika

from amqptasks.transport.reconnect import Backoff, Outages, dead_peer_timeout, missed_heartbeats

if TYPE_CHECKING:
    from collections.abc import Sequence

    from yarl import URL

    from amqptasks.config import BrokerURL


class _RestoreRaceFilter(logging.Filter):
    """Drop aio-pika's error about a channel it tried to reopen on a closing connection.

    When the connection drops, each robust channel's close callback tries to
    reopen the channel at once, on the connection that is going away; aio-pika
    logs that failure at error level, once per channel and outage. It is
    harmless (the connection restores every channel once it is back) and would
    turn our one warning per outage into a burst of errors.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("RobustChannel._on_close" in message and message.endswith(" closed"))


logging.getLogger("aio_pika.tools").addFilter(_RestoreRaceFilter())

#: aiormq keeps the silence limit in a private attribute; if a release renames it we
#: keep aiormq's own (longer) limit rather than fail.
_GRACE_ATTRIBUTE = "_Connection__heartbeat_grace_timeout"


class RobustConnection(aio_pika.RobustConnection):
    """A robust connection that backs off with jitter and logs once per outage.

    Attributes:
        backoff: The reconnect policy.
    """

    backoff = Backoff()
    #: Whether outages are logged as warnings (else at debug level).
    log_outages = True

    def __init__(self, url: URL, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any):
        super().__init__(url, loop, **kwargs)
        self._failures = 0
        self._was_connected = False
        self._last_error = ""
        self._failure_waiters: set[asyncio.Future[None]] = set()
        self._nodes: list[URL] = []
        self._node = 0
        self.reconnect_interval = self.backoff.initial
        # host:port/vhost only: never the credentials.
        where = f"{self.url.host}:{self.url.port}{self.url.path}"
        self._outages = Outages(where, loud=self.log_outages)

    def fail_over(self, nodes: Sequence[BrokerURL], current: int) -> None:
        """Reconnect to the next of ``nodes`` (a cluster's) after each loss or failed attempt.

        Args:
            nodes: Every node, in the URL's order.
            current: The index of the node connected to now.
        """
        template = self.url
        self._nodes = [_node_url(template, node) for node in nodes]
        self._node = current
        self._outages.where = ",".join(f"{node.host}:{node.port}" for node in nodes) + str(
            template.path
        )

    @property
    def outages(self) -> int:
        """Connections lost since it was opened (each may take many attempts)."""
        return self._outages.count

    @property
    def failed_attempts(self) -> int:
        """Reconnect attempts that failed since the connection was lost (0 while up)."""
        return max(0, self._failures - 1)

    @property
    def last_error(self) -> str:
        """Why the connection was lost, or why the last reconnect attempt failed."""
        return self._last_error

    async def wait_attempt(self, timeout: float) -> bool:
        """Wait for the reconnect under way: True once connected, False if it failed.

        Returns at once when connected, or when an attempt already failed in
        this outage (the next one may be seconds away). False after ``timeout``.
        """
        if self.connected.is_set():
            return True
        if self.failed_attempts or self.is_closed:
            return False
        failure: asyncio.Future[None] = self.loop.create_future()
        self._failure_waiters.add(failure)
        connected: asyncio.Future[Any] = asyncio.ensure_future(self.connected.wait())
        try:
            await asyncio.wait(
                {failure, connected}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            connected.cancel()
            failure.cancel()
            self._failure_waiters.discard(failure)
        return self.connected.is_set()

    @property
    def heartbeat(self) -> float:
        """The heartbeat timeout asked for in the URL, in seconds (0: off)."""
        try:
            return float(self.url.query.get("heartbeat", 0))
        except ValueError:
            return 0.0

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        await super()._on_connection_close(closing)
        if self._close_called or self.is_closed or not self._was_connected:
            return  # closed on purpose, or the first connect failed (the caller is told)
        self._failures += 1  # the loss itself, then each failed attempt
        # aio-pika tries once at once, then sleeps this long after each failure.
        self.reconnect_interval = self.backoff.delay(self.failed_attempts)
        reason = _reason(closing)
        if reason == "CancelledError" and self.heartbeat:
            # aiormq cancels its reader when the peer went silent.
            reason = missed_heartbeats(self.heartbeat)
        self._last_error = reason
        if self._nodes:  # the next attempt goes to the next node
            self._node = (self._node + 1) % len(self._nodes)
            self.url = self._nodes[self._node]
        for waiter in self._failure_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._failure_waiters.clear()
        self._outages.lost(reason)

    async def _on_connected(self) -> None:
        self._detect_dead_peer()
        # Restores every channel (QoS, declarations, consumers); raises if that fails,
        # which closes the connection and counts as a failed attempt.
        await super()._on_connected()
        self._outages.restored(self._failures)
        self._failures = 0
        self._was_connected = True
        self.reconnect_interval = self.backoff.initial

    def _detect_dead_peer(self) -> None:
        transport = self.transport
        limit = dead_peer_timeout(self.heartbeat)
        if transport is None or not limit:
            return
        connection = transport.connection
        if hasattr(connection, _GRACE_ATTRIBUTE):
            setattr(connection, _GRACE_ATTRIBUTE, limit)


class QuietRobustConnection(RobustConnection):
    """A :class:`RobustConnection` that logs its outages at debug level only."""

    log_outages = False


def _node_url(template: URL, node: BrokerURL) -> URL:
    """``template`` (with its query: heartbeat, timeouts, client properties) aimed at ``node``."""
    return (
        template.with_scheme("amqps" if node.ssl else "amqp")
        .with_host(node.host)
        .with_port(node.port)
        .with_user(node.username)
        .with_password(node.password)
        .with_path("/" + node.vhost)  # (drops the query: put it back)
        .with_query(template.query)
    )


def _reason(closing: asyncio.Future[Any]) -> str:
    if closing.cancelled():
        return "CancelledError"
    exc = closing.exception()
    if exc is None:
        return "closed"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
