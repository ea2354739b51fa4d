"""deploy/rabbitmq/: a node starts with the recommended rabbitmq.conf and applies it.

On RabbitMQ 3.10 with rabbitmq.conf; on 4.x (AMQPTASKS_TEST_BROKER=4) with rabbitmq.conf
and rabbitmq-4.conf, whose keys 3.10 refuses. A node of its own: the point is its config.
"""

from __future__ import annotations

import os
from pathlib import Path

import pika
import pika.exceptions
import pytest

from amqptasks.testing.node import RabbitNode

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq"


def _env(node: RabbitNode, *names: str) -> str:
    terms = ", ".join(f"application:get_env(rabbit, {name})" for name in names)
    return node.ctl("eval", f"{{{terms}}}.").strip()


def test_recommended_rabbitmq_conf_starts_and_applies() -> None:
    broker = os.environ.get("AMQPTASKS_TEST_BROKER") or "system"
    conf = (DEPLOY / "rabbitmq.conf").read_text()
    if broker == "4":
        conf += "\n" + (DEPLOY / "rabbitmq-4.conf").read_text()
    with RabbitNode(extra_conf=conf, broker=broker) as node:
        assert _env(node, "consumer_timeout", "max_message_size", "cluster_partition_handling") == (
            "{{ok,3600000},{ok,16777216},{ok,pause_minority}}"
        )
        if broker == "4":
            denied = node.ctl(
                "eval",
                "[rabbit_deprecated_features:is_permitted(F) || F <- "
                "[transient_nonexcl_queues, global_qos, classic_queue_mirroring, ram_node_type]].",
            )
            # (is_permitted also logs why each is denied; the answer is the last line.)
            assert denied.strip().splitlines()[-1] == "[false,false,false,false]"
        # The size limit is the broker's: a message over 16 MiB closes the channel.
        connection = pika.BlockingConnection(pika.URLParameters(node.amqp_url))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            queue = channel.queue_declare("", exclusive=True).method.queue
            channel.basic_publish("", queue, b"x" * (16 * 1024 * 1024))  # at the limit: taken
            with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="max size"):
                channel.basic_publish("", queue, b"x" * (16 * 1024 * 1024 + 1))
        finally:
            connection.close()
