"""What differs between RabbitMQ versions, checked on the session broker (3.10 or 4.x).

Each test reads the broker's version (``broker_version``, from its server properties)
and asserts what that version does; the test command runs them on both.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions
import pytest

from amqptasks import App, Queue
from amqptasks.testing import RabbitNode
from amqptasks.topology.features import BrokerFeatures
from amqptasks.transport.declare_sync import apply_declarations
from amqptasks.worker.checks import broker_features, warn_about_consumer_timeouts

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration


@pytest.fixture
def features(broker_version: tuple[int, ...]) -> BrokerFeatures:
    parsed = BrokerFeatures.parse(".".join(str(part) for part in broker_version))
    assert parsed is not None
    return parsed


@pytest.fixture
def make_app(broker_env: str, broker_url: str) -> Iterator[Any]:
    apps: list[App] = []

    def make(*queues: Queue, **settings: Any) -> App:
        app = App("versions", broker_url=broker_url, queues=list(queues), **settings)
        apps.append(app)
        apply_declarations(
            app.settings.broker,
            app.declarations([q.name for q in queues]),
            "declare",
            management=None,
            connection_name="test_broker_versions",
        )
        return app

    yield make
    for app in apps:
        app.close()


def _live_arguments(app: App, queue: str) -> dict[str, Any]:
    found = app.management().queue(queue)
    assert found is not None, f"queue {queue} not found through the management API"
    return dict(found["arguments"])


def test_the_version_is_read_from_the_broker(
    make_app: Any, features: BrokerFeatures, broker_version: tuple[int, ...]
) -> None:
    app = make_app()
    through_management = asyncio.run(broker_features(app))
    assert through_management == features
    assert features.version[:2] == broker_version[:2]


def test_quorum_queues_get_worker_max_deliveries_as_delivery_limit(
    make_app: Any, queue_name: str
) -> None:
    # Not the broker's default (none on 3.x, a silent 20 on 4.x): the worker's count.
    app = make_app(Queue(queue_name, queue_type="quorum"), worker_max_deliveries=7)
    arguments = _live_arguments(app, queue_name)
    assert arguments["x-delivery-limit"] == 7
    assert arguments["x-queue-type"] == "quorum"


def test_a_classic_queue_shows_no_difference_on_any_version(
    make_app: Any, queue_name: str, broker_url: str
) -> None:
    from amqptasks.topology.diff import compare

    app = make_app(Queue(queue_name, max_priority=3))
    wanted = app.declarations([queue_name])
    live = {q.name: app.management().queue(q.name) for q in wanted.queues}
    rows = compare(wanted, live, None, None)
    assert {row.status for row in rows} == {"ok"}, rows


def test_quorum_queue_priorities_follow_the_broker_version(
    make_app: Any, queue_name: str, broker_url: str, features: BrokerFeatures
) -> None:
    make_app(Queue(queue_name, queue_type="quorum"))
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        sent = [("a", 0), ("b", 1), ("c", 9), ("d", 4), ("e", 5), ("f", 0)]
        for body, priority in sent:
            channel.basic_publish(
                "", queue_name, body.encode(), pika.BasicProperties(priority=priority)
            )
        got = []
        while len(got) < len(sent):
            method, _properties, body = channel.basic_get(queue_name, auto_ack=True)
            if method is not None:
                got.append(body.decode())
    finally:
        connection.close()
    if features.quorum_priorities:
        # Two levels: 5-255 before 0-4, each in publishing order.
        assert got == ["c", "e", "a", "b", "d", "f"]
    else:
        assert got == ["a", "b", "c", "d", "e", "f"]


@pytest.fixture(scope="module")
def ticking_node() -> Iterator[RabbitNode]:
    """A node of its own, of the session broker's kind, whose channels tick each second.

    Consumer timeouts are checked on each channel tick (60 s by default). The timed-out
    channel this test provokes stays out of the session node's log, which other tests
    read for exactly that.
    """
    node = RabbitNode(broker=os.environ.get("AMQPTASKS_TEST_BROKER") or "system")
    node.start()
    try:
        # set_env applies to channels opened afterwards.
        node.ctl("eval", "application:set_env(rabbit, channel_tick_interval, 1000).")
        yield node
    finally:
        node.stop()


def test_a_queue_consumer_timeout_closes_a_slow_consumer_where_the_broker_has_it(
    ticking_node: RabbitNode, queue_name: str, features: BrokerFeatures
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(ticking_node.amqp_url))
    try:
        for queue in Queue(queue_name, consumer_timeout=1).declarations().queues:
            connection.channel().queue_declare(
                queue.name, durable=queue.durable, arguments=dict(queue.arguments)
            )
        channel = connection.channel()
        reasons: list[Exception] = []
        channel._impl.add_on_close_callback(lambda _channel, reason: reasons.append(reason))
        channel.basic_publish("", queue_name, b"slow")
        held = []
        channel.basic_consume(queue_name, lambda *args: held.append(args[1].delivery_tag))
        deadline = time.monotonic() + 8  # the 1 s timeout, checked each 1 s tick
        while time.monotonic() < deadline and channel.is_open:
            connection.process_data_events(time_limit=0.2)
        assert held, "the message was never delivered"
        if features.per_queue_consumer_timeout:
            (reason,) = reasons
            assert isinstance(reason, pika.exceptions.ChannelClosedByBroker)
            assert reason.reply_code == 406
            assert "delivery acknowledgement on channel" in reason.reply_text
            assert "timed out" in reason.reply_text
            assert "1000 ms" in reason.reply_text  # the queue's, not the node's 60 s
        else:
            # 3.10/3.11 ignore x-consumer-timeout: the node-wide 60 s applies.
            assert channel.is_open and not reasons
    finally:
        if connection.is_open:
            connection.close()


def test_worker_warns_that_a_queue_consumer_timeout_is_ignored_only_where_it_is(
    make_app: Any, queue_name: str, features: BrokerFeatures, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(Queue(queue_name, consumer_timeout=120), broker_consumer_timeout=60)

    @app.task
    def slow() -> None:
        """A task the worker's 90 s hard time limit applies to."""

    with caplog.at_level(logging.WARNING, logger="amqptasks.worker.checks"):
        asyncio.run(warn_about_consumer_timeouts(app, [queue_name], 90))
    ignored = "the queue's own consumer timeout has no effect" in caplog.text
    too_long = "time limits longer than the broker's consumer timeout" in caplog.text
    if features.per_queue_consumer_timeout:
        # The queue's 120 s applies: a 90 s time limit fits.
        assert not ignored and not too_long
    else:
        # The node-wide 60 s applies, which cuts a 90 s time limit.
        assert ignored and too_long
