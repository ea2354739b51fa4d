"""pika specifics: connection parameters, and two adjustments amqptasks relies on
(applied once, at import)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import pika
import pika.data
import pika.heartbeat

from amqptasks.transport.reconnect import dead_peer_timeout

if TYPE_CHECKING:
    from amqptasks.config import BrokerURL


def _encode_value_with_floats(pieces: list[bytes], value: Any) -> int:
    if isinstance(value, float):
        pieces.append(b"d" + struct.pack(">d", value))
        return 9
    encoded: int = _pika_encode_value(pieces, value)
    return encoded


# pika cannot encode float header values, which Celery (py-amqp) sends as AMQP
# doubles ("d") - e.g. in "timelimit". pika already decodes "d"; teach its table
# encoder the same, so float headers round-trip and Celery reads what it wrote.
_pika_encode_value = pika.data.encode_value
if getattr(pika.data.encode_value, "__name__", "") != _encode_value_with_floats.__name__:
    pika.data.encode_value = _encode_value_with_floats


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


class SelectConnection(pika.SelectConnection):  # type: ignore[misc]
    def _create_heartbeat_checker(self) -> pika.heartbeat.HeartbeatChecker | None:
        heartbeat = self.params.heartbeat
        if heartbeat is not None and heartbeat > 0:
            return _HeartbeatChecker(self, heartbeat)
        return None


def connection_parameters(url: BrokerURL, connection_name: str) -> pika.ConnectionParameters:
    """pika parameters for ``url``, with our timeouts and a connection name."""
    ssl_options = None
    if url.ssl:
        import ssl

        ssl_options = pika.SSLOptions(ssl.create_default_context(), url.host)
    return pika.ConnectionParameters(
        host=url.host,
        port=url.port,
        virtual_host=url.vhost,
        credentials=pika.PlainCredentials(url.username, url.password, erase_on_connect=False),
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
