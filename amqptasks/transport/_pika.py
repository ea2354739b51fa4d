"""pika specifics: connection parameters, and adjustments amqptasks relies on.

At import, pika's field-table encoder and decoder are replaced by
:mod:`amqptasks.transport._fieldtable` (the same bytes, several times faster, and
floats as AMQP doubles, which Celery sends and pika could not encode) and
:mod:`amqptasks.transport._fielddecode` (faster, and floats decoded as floats:
pika truncates them to integers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pika
import pika.credentials
import pika.heartbeat
from pika.adapters.asyncio_connection import AsyncioConnection as _PikaAsyncioConnection
from pika.adapters.utils.io_services_utils import _AsyncPlaintextTransport

from amqptasks.config.tls_options import TLSOptions
from amqptasks.transport import _fielddecode, _fieldtable, tls
from amqptasks.transport.reconnect import dead_peer_timeout

if TYPE_CHECKING:
    from amqptasks.config import BrokerURL

_fieldtable.install()
_fielddecode.install()


class _HeartbeatChecker(pika.heartbeat.HeartbeatChecker):  # type: ignore[misc]
    """pika's checker, declaring a silent broker dead after about two heartbeat timeouts.

    pika checks for received bytes every ``timeout + 5`` seconds and gives up
    after one idle window, so with ``?heartbeat=2`` a black-holed connection
    lingers 7 to 14 s. A window of one timeout (RabbitMQ sends a heartbeat frame
    every half timeout) gives up after one to two timeouts instead, as RabbitMQ
    does on its side; publishes waiting for a confirm then fail with
    :class:`ConnectionLost` instead of waiting for their timeout.
    """

    def _start_check_timer(self) -> None:
        # The attribute pika reads when it arms the timer.
        self._check_interval = dead_peer_timeout(self._timeout) / 2
        super()._start_check_timer()


class _Tuned:
    """What our pika connections add: the heartbeat checker, writing ready-made frames."""

    _body_max_length: int
    _transport: Any
    params: pika.ConnectionParameters
    bytes_sent: int
    frames_sent: int
    if TYPE_CHECKING:  # pika's, found after this class in the MRO

        def _adapter_emit_data(self, data: bytes) -> None: ...

    @property
    def body_max_length(self) -> int:
        """The largest body frame payload: the negotiated ``frame_max`` less 8."""
        length: int = self._body_max_length
        return length

    def write_frames(self, data: bytes, frame_count: int) -> None:
        """Send marshalled frames (of any number of messages) in one write.

        What pika's ``Connection._output_marshaled_frames`` does for each frame,
        counters included (the heartbeat checker reads them), except that on a
        plain TCP socket with nothing buffered the bytes go straight out: pika's
        transport would watch the socket for writability and send on the next
        turn of the loop, two ``epoll_ctl`` and an ``epoll_wait`` later.
        """
        self.bytes_sent += len(data)
        self.frames_sent += frame_count
        transport = self._transport
        sock = getattr(transport, "_sock", None)
        # pika internals (1.3, 1.4): anything unexpected takes pika's own path.
        if (
            type(transport) is _AsyncPlaintextTransport
            and sock is not None
            and getattr(transport, "_state", None) == getattr(transport, "_STATE_ACTIVE", ())
            and not transport.get_write_buffer_size()
        ):
            try:
                sent: int = sock.send(data)
            except OSError:  # would block, or broken: pika's own write deals with it
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        self._adapter_emit_data(data)

    def _create_heartbeat_checker(self) -> pika.heartbeat.HeartbeatChecker | None:
        heartbeat = self.params.heartbeat
        if heartbeat is not None and heartbeat > 0:
            return _HeartbeatChecker(self, heartbeat)
        return None

    def write_buffer_size(self) -> int:
        """Bytes written but not yet handed to the kernel (0 without a transport)."""
        size = getattr(self._transport, "get_write_buffer_size", None)
        return int(size()) if size is not None else 0


class SelectConnection(_Tuned, pika.SelectConnection):  # type: ignore[misc]
    """pika's ``SelectConnection`` (its own I/O loop in a thread), tuned."""


class AsyncioConnection(_Tuned, _PikaAsyncioConnection):  # type: ignore[misc]
    """pika's connection on the running asyncio loop, tuned (the worker's consumer)."""


def connection_parameters(url: BrokerURL, connection_name: str) -> pika.ConnectionParameters:
    """pika parameters for ``url``, with our timeouts and a connection name."""
    ssl_options = None
    if url.ssl:
        context = tls.ssl_context(url.tls or TLSOptions())
        ssl_options = pika.SSLOptions(context, tls.server_hostname(url))
    credentials: pika.credentials.PlainCredentials | pika.credentials.ExternalCredentials
    if url.external_login:
        credentials = pika.credentials.ExternalCredentials()
    else:
        credentials = pika.PlainCredentials(url.username, url.password, erase_on_connect=False)
    return pika.ConnectionParameters(
        host=url.host,
        port=url.port,
        virtual_host=url.vhost,
        credentials=credentials,
        heartbeat=url.heartbeat,
        socket_timeout=url.connect_timeout,
        stack_timeout=url.connect_timeout,
        blocked_connection_timeout=None,
        connection_attempts=1,
        ssl_options=ssl_options,
        client_properties={
            "connection_name": url.connection_name(connection_name),
            "product": "amqptasks",
        },
    )


def every_node_parameters(url: BrokerURL, connection_name: str) -> list[pika.ConnectionParameters]:
    """:func:`connection_parameters` of each node of ``url``: a ``BlockingConnection``
    given them tries the nodes in order (one for a single-node URL)."""
    return [connection_parameters(node, connection_name) for node in url.nodes]
