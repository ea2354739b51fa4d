"""``amqptasks multi``: start, stop and restart named, detached workers (Celery multi's verbs)."""

from amqptasks.multi.cluster import Cluster
from amqptasks.multi.nodes import MultiUsageError, Node, expand, parse_nodes

__all__ = ["Cluster", "MultiUsageError", "Node", "expand", "parse_nodes"]
