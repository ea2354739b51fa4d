"""Transport seams the next capabilities build on, used as those capabilities will use them.

- events: a publish without ``mandatory`` and without waiting for a confirm, to an
  exchange nobody may be bound to (sync and async transports);
- remote control: a consumer callback per queue on one :class:`ConsumerLink` (a
  pidbox queue beside a task queue), and a second reply queue on a producer client
  (control replies beside results).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Any

import pika
import pika.spec
import pytest

from amqptasks import App
from amqptasks.config import BrokerURL
from amqptasks.exceptions import Unroutable
from amqptasks.protocol.envelope import OutgoingMessage
from amqptasks.transport import aio
from amqptasks.transport.consumer import ConsumerLink, Delivery
from amqptasks.transport.sync import SyncTransport
from tests.integration.conftest import wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from pika.adapters.blocking_connection import BlockingChannel

    from amqptasks._client import Reply


def _event(exchange: str, kind: str) -> OutgoingMessage:
    """An event message, shaped as Celery's (a JSON body on a topic exchange)."""
    return OutgoingMessage(
        exchange=exchange,
        routing_key=kind.replace("-", "."),
        body=json.dumps({"type": kind, "hostname": "w1@host"}).encode(),
        content_type="application/json",
        content_encoding="utf-8",
        headers={"hostname": "w1@host"},
        message_id=uuid.uuid4().hex,
        delivery_mode=1,
    )


@pytest.fixture
def events_exchange(amqp: BlockingChannel, unique_name: Callable[[str], str]) -> Iterator[str]:
    """A topic exchange with nothing bound to it (as Celery's ``celeryev`` when no monitor runs)."""
    name = unique_name("ev")
    amqp.exchange_declare(name, "topic", auto_delete=False, durable=False)
    yield name
    if amqp.is_open:
        amqp.exchange_delete(name)


def _listen(amqp: BlockingChannel, exchange: str) -> str:
    """An exclusive queue bound to every event of ``exchange`` (a monitor starting up)."""
    queue = amqp.queue_declare("", exclusive=True).method.queue
    amqp.queue_bind(queue, exchange, "#")
    return str(queue)


def _received(amqp: BlockingChannel, queue: str) -> list[dict[str, Any]]:
    found = []
    while True:
        method, _properties, body = amqp.basic_get(queue, auto_ack=True)
        if method is None:
            return found
        found.append(json.loads(body))


def test_sync_events_to_an_unbound_exchange_are_dropped_not_raised(
    broker_url: str, amqp: BlockingChannel, events_exchange: str
) -> None:
    transport = SyncTransport(BrokerURL.parse(broker_url), connection_name="events test")
    try:
        transport.publish_unconfirmed(_event(events_exchange, "worker-heartbeat"))
        queue = _listen(amqp, events_exchange)
        transport.publish_unconfirmed(_event(events_exchange, "task-succeeded"))
        got = wait_for(lambda: _received(amqp, queue), what="the event after the bind")
        assert [event["type"] for event in got] == ["task-succeeded"]
        # the connection is still fine for confirmed, mandatory publishes
        transport.publish(_event(events_exchange, "task-started"))
    finally:
        transport.close()


async def test_async_events_to_an_unbound_exchange_are_dropped_not_raised(
    broker_url: str, amqp: BlockingChannel, events_exchange: str
) -> None:
    url = BrokerURL.parse(broker_url)
    connection = await aio.connect(url, "events test")
    publisher = aio.AioPublisher(connection, url, publish_timeout=5.0)
    try:
        await publisher.publish_unconfirmed(_event(events_exchange, "worker-heartbeat"))
        queue = await asyncio.to_thread(_listen, amqp, events_exchange)
        await publisher.publish_unconfirmed(_event(events_exchange, "task-succeeded"))
        got = await asyncio.to_thread(
            wait_for, lambda: _received(amqp, queue), 20.0, "the event after the bind"
        )
        assert [event["type"] for event in got] == ["task-succeeded"]
        await publisher.publish(_event(events_exchange, "task-started"))
    finally:
        await publisher.close()
        await connection.close()


def test_a_mandatory_publish_to_the_unbound_exchange_still_raises(
    broker_url: str, events_exchange: str
) -> None:
    transport = SyncTransport(BrokerURL.parse(broker_url), connection_name="events test")
    try:
        with pytest.raises(Unroutable):
            transport.publish(_event(events_exchange, "task-failed"))
    finally:
        transport.close()


@pytest.fixture
def two_queues(amqp: BlockingChannel, unique_name: Callable[[str], str]) -> Iterator[list[str]]:
    """A task queue and a control (pidbox-like) queue, deleted afterwards."""
    names = [unique_name("tasks"), unique_name("pidbox")]
    for name in names:
        amqp.queue_declare(name, durable=True)  # RabbitMQ 4 denies transient non-exclusive queues
    yield names
    if amqp.is_open:
        for name in names:
            amqp.queue_delete(name)


async def test_a_consumer_link_gives_each_queue_its_own_callback(
    broker_url: str, amqp: BlockingChannel, two_queues: list[str]
) -> None:
    tasks_queue, control_queue = two_queues
    task_deliveries: list[Delivery] = []
    control_deliveries: list[Delivery] = []
    link = ConsumerLink(BrokerURL.parse(broker_url), "seams test", task_deliveries.append)
    await link.open()
    try:
        await link.consume(tasks_queue, 4)  # the link's callback
        await link.consume(control_queue, 1, callback=control_deliveries.append)
        for queue, body in ((tasks_queue, b"a task"), (control_queue, b"ping")):
            amqp.basic_publish("", queue, body)
        for _ in range(200):
            if task_deliveries and control_deliveries:
                break
            await asyncio.sleep(0.05)
        assert [(d.queue, d.body) for d in task_deliveries] == [(tasks_queue, b"a task")]
        assert [(d.queue, d.body) for d in control_deliveries] == [(control_queue, b"ping")]
        for delivery in (*task_deliveries, *control_deliveries):
            delivery.channel.write([pika.spec.Basic.Ack(delivery.delivery_tag)])
    finally:
        await link.cancel()
        await link.close()


def _answer(amqp: BlockingChannel, reply_to: str, correlation_id: str, payload: Any) -> None:
    """Reply as a worker does: JSON to ``reply_to`` through the default exchange."""
    amqp.basic_publish(
        "",
        reply_to,
        json.dumps(payload).encode(),
        pika.BasicProperties(content_type="application/json", correlation_id=correlation_id),
    )


def _result(task_id: str) -> dict[str, Any]:
    return {"task_id": task_id, "status": "SUCCESS", "result": 5, "traceback": None}


def test_a_sync_client_opens_a_control_reply_queue_beside_its_results(
    broker_url: str, amqp: BlockingChannel, queue_name: str
) -> None:
    app = App("seams", broker_url=broker_url)
    try:
        result = app.send_task("proj.add", (2, 3), queue=queue_name)  # no worker: we answer
        client = app._client()
        control: list[Reply] = []
        control_queue = client.open_reply_queue("control", control.append)
        assert control_queue != client.reply_queue
        _answer(amqp, control_queue, "ping-1", [{"w1@host": {"ok": "pong"}}])
        _answer(amqp, client.reply_queue, result.id, _result(result.id))
        assert result.get(timeout=10) == 5
        wait_for(lambda: control, what="the control reply")
        assert [(r.correlation_id, json.loads(r.body)) for r in control] == [
            ("ping-1", [{"w1@host": {"ok": "pong"}}])
        ]
        assert control[0].content_type == "application/json"
    finally:
        app.close()


async def test_an_async_client_opens_a_control_reply_queue_beside_its_results(
    broker_url: str, amqp: BlockingChannel, queue_name: str
) -> None:
    app = App("seams", broker_url=broker_url)
    try:
        result = await app.asend_task("proj.add", (2, 3), queue=queue_name)
        client = app._aclient()
        control: list[Reply] = []
        control_queue = await client.open_reply_queue("control", control.append)
        assert control_queue != client.reply_queue
        _answer(amqp, control_queue, "ping-1", [{"w1@host": {"ok": "pong"}}])
        _answer(amqp, client.reply_queue, result.id, _result(result.id))
        assert await result.aget(timeout=10) == 5
        for _ in range(200):
            if control:
                break
            await asyncio.sleep(0.05)
        assert [(r.correlation_id, json.loads(r.body)) for r in control] == [
            ("ping-1", [{"w1@host": {"ok": "pong"}}])
        ]
    finally:
        await app.aclose()
