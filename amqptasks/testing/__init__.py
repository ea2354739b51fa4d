"""Test helpers for amqptasks.

:class:`RabbitNode` starts and stops a private RabbitMQ node (own name, own ports on
127.0.0.1, config/data/logs in one directory) via the ``rabbitmq-node`` script, and
offers a few ``rabbitmqctl`` helpers for integration tests (including killing or
freezing the node); :class:`RabbitCluster` starts several such nodes as one cluster
(its own Erlang cookie) for failover tests. :class:`FaultProxy` sits between a client
and the broker and resets, black-holes or delays the traffic on demand.
:func:`eager_mode` runs an app's tasks in-process for a block (no broker);
:mod:`amqptasks.testing.pytest_plugin` has the ``eager_app`` fixture.
"""

from __future__ import annotations

from amqptasks.testing.cluster import RabbitCluster
from amqptasks.testing.eager import eager_mode
from amqptasks.testing.node import RabbitNode
from amqptasks.testing.proxy import FaultProxy

__all__ = ["FaultProxy", "RabbitCluster", "RabbitNode", "eager_mode"]
