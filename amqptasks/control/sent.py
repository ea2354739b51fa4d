"""``task-sent`` events from producers (Celery's ``task_send_sent_event``).

:func:`send_sent_events` makes an app announce every task it publishes, as a
Celery producer with ``task_send_sent_event`` does, so Flower shows calls as
SENT before a worker receives them. The event leaves after the broker confirmed
the task message, on the app's sync producer connection, unconfirmed and
without ``mandatory``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pika

from amqptasks import signals
from amqptasks.control.events import EVENT_EXCHANGE, EventClock, event_message, make_event
from amqptasks.logging import get_logger
from amqptasks.transport import _pika

if TYPE_CHECKING:
    from amqptasks.app import App
    from amqptasks.protocol.envelope import OutgoingMessage

__all__ = ["SentEvents", "send_sent_events"]

log = get_logger(__name__)


def send_sent_events(app: App) -> SentEvents:
    """Send a ``task-sent`` event for each task ``app`` publishes from now on."""
    sent = SentEvents(app)
    sent.connect()
    return sent


class SentEvents:
    """The signal receivers that send ``task-sent`` (see :func:`send_sent_events`)."""

    def __init__(self, app: App, hostname: str | None = None) -> None:
        import socket

        self.app = app
        self.hostname = hostname or f"{app.main}@{socket.gethostname()}"
        self.clock = EventClock()
        self._waiting: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def connect(self) -> None:
        """Declare the event exchange and start sending."""
        url = self.app.settings.broker
        connection = pika.BlockingConnection(_pika.every_node_parameters(url, "amqptasks events"))
        try:
            connection.channel().exchange_declare(
                EVENT_EXCHANGE.name, EVENT_EXCHANGE.type, durable=True
            )
        finally:
            connection.close()
        signals.before_publish.connect(self._before)
        signals.after_publish.connect(self._after)

    def disconnect(self) -> None:
        """Stop sending."""
        signals.before_publish.disconnect(self._before)
        signals.after_publish.disconnect(self._after)

    def _before(self, sender: object, task_id: str, message: OutgoingMessage, **_: Any) -> None:
        headers = message.headers
        fields = {
            "uuid": task_id,
            "name": headers.get("task"),
            "args": headers.get("argsrepr"),
            "kwargs": headers.get("kwargsrepr"),
            "root_id": headers.get("root_id"),
            "parent_id": headers.get("parent_id"),
            "retries": headers.get("retries") or 0,
            "eta": headers.get("eta"),
            "expires": headers.get("expires"),
            "queue": message.routing_key,
            "exchange": message.exchange,
            "routing_key": message.routing_key,
        }
        with self._lock:
            self._waiting[task_id] = fields

    def _after(self, sender: object, task_id: str, **_: Any) -> None:
        with self._lock:
            fields = self._waiting.pop(task_id, None)
        if fields is None:
            return
        event = make_event("task-sent", self.hostname, self.clock, **fields)
        try:
            self.app._client().transport.publish_unconfirmed(event_message(event))
        except Exception as exc:
            log.debug("task-sent event not sent", error=f"{type(exc).__name__}: {exc}")
