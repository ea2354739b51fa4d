"""Look at, replay and purge dead-letter queues; see the delay levels (operator tools).

Reading a queue without removing anything is done the AMQP way: messages are
delivered without being acked and the channel is then closed, which puts them
all back, in their order (RabbitMQ marks them ``redelivered``). Replay
publishes a message back to its work queue with a confirm and only then acks
it in the DLQ, so a crash in between duplicates, never loses, a message.
These helpers use a short-lived blocking pika connection: they are for the CLI
and scripts, not for hot paths.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions

from amqptasks import constants
from amqptasks.exceptions import NotFound, PublishNotConfirmed
from amqptasks.logging import get_logger
from amqptasks.publishing import DEAD_LETTER_HEADERS
from amqptasks.security.wanted import sealer_for
from amqptasks.topology import delays, names
from amqptasks.transport import errors
from amqptasks.transport._pika import every_node_parameters

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from amqptasks.app import App
    from amqptasks.security.sealing import Sealer

log = get_logger(__name__)

#: Seconds without a new delivery after which a scan is taken to be complete.
SCAN_IDLE = 1.0


@dataclass(frozen=True)
class DeadLetter:
    """One message in a dead-letter queue, and why it is there."""

    task: str
    task_id: str
    reason: str
    error: str
    exc_type: str
    attempts: int | None
    worker: str
    dead_lettered_at: str
    original_exchange: str
    original_routing_key: str
    args_repr: str
    traceback: str
    headers: Mapping[str, Any]
    body: bytes
    properties: pika.BasicProperties


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def describe(properties: pika.BasicProperties, body: bytes) -> DeadLetter:
    """What a dead-lettered message says about itself (ours, or the broker's ``x-death``)."""
    headers: dict[str, Any] = dict(properties.headers or {})
    deaths = headers.get("x-death") or []
    first: Mapping[str, Any] = deaths[0] if deaths else {}  # the most recent event
    # The broker says "delivery_limit" where amqptasks says "delivery-limit".
    reason = _text(headers.get(constants.HEADER_REASON)) or _text(first.get("reason")).replace(
        "_", "-"
    )
    routing_keys = first.get("routing-keys") or [""]
    attempts = headers.get(constants.HEADER_ATTEMPTS)
    when = headers.get(constants.HEADER_DEAD_LETTERED_AT) or first.get("time")
    return DeadLetter(
        task=_text(headers.get("task")),
        task_id=_text(headers.get("id")) or _text(properties.correlation_id),
        reason=reason or "unknown",
        error=_text(headers.get(constants.HEADER_ERROR)),
        exc_type=_text(headers.get(constants.HEADER_EXC_TYPE)),
        attempts=int(attempts) if attempts is not None else None,
        worker=_text(headers.get(constants.HEADER_WORKER)),
        dead_lettered_at=when.isoformat() if isinstance(when, dt.datetime) else _text(when),
        original_exchange=_text(
            headers.get(constants.HEADER_ORIGINAL_EXCHANGE, first.get("exchange", ""))
        ),
        original_routing_key=_text(
            headers.get(constants.HEADER_ORIGINAL_ROUTING_KEY, routing_keys[0])
        ),
        args_repr=_text(headers.get("argsrepr")),
        traceback=_text(headers.get(constants.HEADER_TRACEBACK)),
        headers=headers,
        body=body,
        properties=properties,
    )


def resign(
    sealer: Sealer, body: bytes, headers: dict[str, Any], properties: pika.BasicProperties
) -> dict[str, Any]:
    """``headers`` with a fresh signature of the message (none without a signing key)."""
    if sealer.signer is None:
        return headers
    return {
        **headers,
        **sealer.signer.signature_headers(
            body,
            headers,
            content_type=properties.content_type,
            content_encoding=properties.content_encoding,
            correlation_id=properties.correlation_id,
            reply_to=properties.reply_to,
        ),
    }


class Operator:
    """Dead-letter and delay tools for one app's broker."""

    def __init__(self, app: App) -> None:
        self.app = app

    def dead_letter_queue(self, queue: str) -> str:
        """The DLQ of work queue ``queue`` (or ``queue`` itself if it is a DLQ)."""
        if queue.endswith(names.DEAD_LETTER_SUFFIX):
            return queue
        dlq = self.app.router.queue(queue).dead_letter_queue
        if dlq is None:
            raise NotFound(f"queue {queue!r} has no dead-letter queue (dead_letter=False)")
        return dlq

    def work_queue(self, queue: str) -> str:
        """The work queue a DLQ name belongs to."""
        if queue.endswith(names.DEAD_LETTER_SUFFIX):
            return queue[: -len(names.DEAD_LETTER_SUFFIX)]
        return queue

    @contextmanager
    def _channel(self) -> Iterator[Any]:
        url = self.app.settings.broker
        try:
            connection = pika.BlockingConnection(every_node_parameters(url, "amqptasks dlq"))
        except Exception as exc:
            raise errors.connect_error(exc, url) from exc
        try:
            yield connection.channel()
        finally:
            if connection.is_open:
                connection.close()

    def count(self, queue: str) -> int:
        """Messages waiting in ``queue``.

        Raises:
            NotFound: no such queue.
        """
        with self._channel() as channel:
            try:
                frame = channel.queue_declare(queue, passive=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                raise errors.channel_error(
                    exc.reply_code, exc.reply_text, f"queue {queue!r}"
                ) from exc
            return int(frame.method.message_count)

    def _scan(
        self, channel: Any, queue: str, visit: Callable[[Any, pika.BasicProperties, bytes], bool]
    ) -> None:
        """Deliver every message of ``queue`` once to ``visit``; stop when it returns False."""
        try:
            total = channel.queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as exc:
            raise errors.channel_error(exc.reply_code, exc.reply_text, f"queue {queue!r}") from exc
        deliveries = channel.consume(queue, inactivity_timeout=SCAN_IDLE)
        for seen, (method, properties, body) in enumerate(deliveries):
            if method is None or seen >= total or not visit(method, properties, body):
                break
        channel.cancel()

    def peek(self, queue: str, limit: int | None = None) -> list[DeadLetter]:
        """Read up to ``limit`` messages of the DLQ of ``queue``; they all stay there."""
        found: list[DeadLetter] = []
        with self._channel() as channel:

            def visit(_method: Any, properties: pika.BasicProperties, body: bytes) -> bool:
                found.append(describe(properties, body))
                return limit is None or len(found) < limit

            self._scan(channel, self.dead_letter_queue(queue), visit)
        return found

    def replay(
        self,
        queue: str,
        *,
        task: str | None = None,
        reason: str | None = None,
        limit: int | None = None,
    ) -> int:
        """Send dead letters (matching ``task`` and ``reason``) back to their work queue.

        Each is published with a confirm to the work queue, with a fresh
        ``retries`` count and without the dead-letter headers (signed again with
        the app's signing key, when it has one), and only then removed from the DLQ.

        Returns:
            How many were replayed.
        """
        target = self.work_queue(queue)
        replayed = 0
        sealer = sealer_for(self.app.settings)
        if sealer is None or sealer.signer is None:
            log.warning(
                "no signing key (security_signing_key): replayed messages go unsigned, and "
                "workers that require signatures dead-letter them again"
            )
        with self._channel() as channel:
            channel.confirm_delivery()

            def visit(method: Any, properties: pika.BasicProperties, body: bytes) -> bool:
                nonlocal replayed
                letter = describe(properties, body)
                if (task and letter.task != task) or (reason and letter.reason != reason):
                    return True  # left unacked: it goes back when the channel closes
                headers = {
                    k: v
                    for k, v in letter.headers.items()
                    if k not in DEAD_LETTER_HEADERS and not k.startswith(constants.HEADER_PREFIX)
                }
                headers["retries"] = 0
                if sealer is not None:  # a fresh signature: the old one is stale or replayed
                    headers = resign(sealer, body, headers, properties)
                properties.headers = headers
                try:
                    channel.basic_publish("", target, body, properties, mandatory=True)
                except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
                    raise PublishNotConfirmed(
                        f"replay of {letter.task_id} to queue {target!r} was not confirmed "
                        f"({type(exc).__name__}); it stays in the DLQ",
                        routing_key=target,
                        message_id=letter.task_id,
                    ) from exc
                channel.basic_ack(method.delivery_tag)
                replayed += 1
                return limit is None or replayed < limit

            self._scan(channel, self.dead_letter_queue(queue), visit)
        return replayed

    def purge(self, queue: str) -> int:
        """Delete every message of the DLQ of ``queue``; return how many."""
        with self._channel() as channel:
            dlq = self.dead_letter_queue(queue)
            try:
                frame = channel.queue_purge(dlq)
            except pika.exceptions.ChannelClosedByBroker as exc:
                raise errors.channel_error(
                    exc.reply_code, exc.reply_text, f"queue {dlq!r}"
                ) from exc
            return int(frame.method.message_count)

    def delay_levels(self) -> list[tuple[int, int, str]]:
        """``(level, messages waiting, queue)`` for every delay level that exists."""
        prefix = self.app.settings.delay_prefix
        levels: list[tuple[int, int, str]] = []
        with self._channel() as channel:
            for level in range(delays.LEVELS):
                name = names.delay_level(prefix, level)
                try:
                    frame = channel.queue_declare(name, passive=True)
                except pika.exceptions.ChannelClosedByBroker:
                    channel = channel.connection.channel()
                    continue
                levels.append((level, int(frame.method.message_count), name))
        return levels
