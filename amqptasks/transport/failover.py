"""Which node of a cluster URL to connect to next.

A broker URL may name several nodes (``amqp://n1//;amqp://n2//;amqp://n3//``). Each
connection attempt tries them in turn, starting from the node after the one it
was last connected to (round-robin, as kombu's failover), and gives up only
when none answered: so a lost connection moves to another node at once, and the
reconnect backoff paces the rounds, not the nodes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from amqptasks.exceptions import BrokerError, BrokerUnreachable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from amqptasks.config import BrokerURL

T = TypeVar("T")


class NodeRing:
    """The nodes of ``url``, tried round-robin.

    Args:
        url: The broker URL (one node or several).
    """

    def __init__(self, url: BrokerURL) -> None:
        self.url = url
        self.nodes = url.nodes
        self._next = 0
        #: Index of the node last connected to (-1: none yet).
        self.current = -1

    def round(self) -> list[BrokerURL]:
        """The nodes to try now, in order: from the one after the last connected to."""
        count = len(self.nodes)
        return [self.nodes[(self._next + step) % count] for step in range(count)]

    def connected(self, node: BrokerURL) -> None:
        """``node`` answered: the next round starts with the node after it."""
        self.current = self.nodes.index(node)
        self._next = (self.current + 1) % len(self.nodes)

    def connect(self, open_node: Callable[[BrokerURL], T]) -> T:
        """``open_node(node)`` for each node of a round until one does not raise
        :class:`BrokerUnreachable`.

        Raises:
            BrokerUnreachable: no node answered (naming each node and why).
            BrokerError: any other error of a node (a refused login), at once.
        """
        failures: list[BrokerError] = []
        for node in self.round():
            try:
                result = open_node(node)
            except BrokerUnreachable as exc:
                failures.append(exc)
                continue
            self.connected(node)
            return result
        raise self._none_answered(failures)

    async def aconnect(self, open_node: Callable[[BrokerURL], Awaitable[T]]) -> T:
        """Async :meth:`connect`."""
        failures: list[BrokerError] = []
        for node in self.round():
            try:
                result = await open_node(node)
            except BrokerUnreachable as exc:
                failures.append(exc)
                continue
            self.connected(node)
            return result
        raise self._none_answered(failures)

    def _none_answered(self, failures: list[BrokerError]) -> BrokerError:
        if len(failures) == 1:
            return failures[0]
        return BrokerUnreachable(
            f"no node of the cluster answered ({len(failures)} tried): "
            + "; ".join(str(failure) for failure in failures)
        )
