"""Where a task message goes: exchange, routing key and (when known) queue."""

from __future__ import annotations

from dataclasses import dataclass

from amqptasks import constants
from amqptasks.exceptions import ConfigError


@dataclass(frozen=True, slots=True)
class Route:
    """A publish destination.

    ``queue`` is set when the route is "straight to this queue" through the
    default exchange; producers then declare the queue before the first publish.
    """

    exchange: str
    routing_key: str
    queue: str | None


def resolve_route(
    *,
    task_queue: str | None,
    default_queue: str,
    queue: str | None = None,
    exchange: str | None = None,
    routing_key: str | None = None,
) -> Route:
    """Per-call options win over the task's, which win over the app default.

    - ``queue=`` alone: the default exchange, routing key = queue name.
    - ``exchange=`` (+ ``routing_key=``): that exchange; the routing key
      defaults to the queue name.
    """
    if queue and routing_key and not exchange and routing_key != queue:
        raise ConfigError(
            f"queue={queue!r} and routing_key={routing_key!r} conflict: through the default "
            f"exchange the routing key is the queue name; pass exchange= as well, or only one"
        )
    target = queue or task_queue or default_queue
    if exchange:
        return Route(exchange=exchange, routing_key=routing_key or target, queue=None)
    if routing_key and routing_key != target:
        return Route(constants.DEFAULT_EXCHANGE, routing_key, queue=routing_key)
    return Route(constants.DEFAULT_EXCHANGE, target, queue=target)
