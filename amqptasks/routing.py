"""Where a task message goes: exchange, routing key, queue and priority (pure).

Precedence, first match wins:

1. the call's own ``queue=`` / ``exchange=`` / ``routing_key=``;
2. the task's ``@app.task(queue=...)``;
3. the app's ``routes``: exact task names, then glob patterns (``"proj.mail.*"``)
   and router functions, in the order given;
4. the app's ``default_queue``.

A queue name resolves to the app's :class:`~amqptasks.topology.model.Queue` of
that name (or an implicit one with default settings): if the queue is bound
to an exchange, the message is published there with the queue's routing key;
otherwise through ``default_exchange`` (the AMQP default exchange unless set).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from amqptasks.exceptions import ConfigError
from amqptasks.topology.model import Declarations, Exchange, Queue

#: A route: a queue name, or a mapping with ``queue``, ``exchange``,
#: ``routing_key`` and ``priority`` keys.
RouteSpec = str | Mapping[str, Any]
#: ``router(task_name, args, kwargs) -> RouteSpec | None``.
RouterFunction = Callable[[str, Sequence[Any], Mapping[str, Any]], RouteSpec | None]
RouteEntry = Mapping[str, RouteSpec] | RouterFunction
#: What ``App(routes=...)`` takes: one entry, or a list of them.
Routes = RouteEntry | Sequence[RouteEntry] | None

#: Implicit queues (named by calls, not declared in the app) kept built.
IMPLICIT_QUEUE_CACHE = 10_000

_ROUTE_KEYS = frozenset({"queue", "exchange", "routing_key", "priority"})


@dataclass(frozen=True, slots=True)
class Route:
    """A publish destination.

    Attributes:
        exchange: Exchange to publish to ("" = default exchange).
        routing_key: Routing key.
        queue: The queue the message is meant for, when known (declared before
            publishing, according to its declare mode).
        priority: Priority from the route, if it gave one.
    """

    exchange: str
    routing_key: str
    queue: Queue | None
    priority: int | None = None


def _normalise_routes(routes: Routes) -> list[Mapping[str, RouteSpec] | RouterFunction]:
    if routes is None:
        return []
    if callable(routes) or isinstance(routes, Mapping):
        return [routes]
    if isinstance(routes, Sequence) and not isinstance(routes, str):
        entries = list(routes)
        for entry in entries:
            if not (callable(entry) or isinstance(entry, Mapping)):
                raise ConfigError(f"each route must be a mapping or a function, got {entry!r}")
        return entries
    raise ConfigError(f"routes must be a mapping, a function or a list of them, got {routes!r}")


def _check_spec(spec: RouteSpec, where: str) -> Mapping[str, Any]:
    if isinstance(spec, str):
        return {"queue": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"route {where} must be a queue name or a mapping, got {spec!r}")
    unknown = set(spec) - _ROUTE_KEYS
    if unknown:
        raise ConfigError(
            f"route {where} has unknown key(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_ROUTE_KEYS))}"
        )
    return spec


class Router:
    """Resolves task calls to :class:`Route` objects for one app."""

    def __init__(
        self,
        *,
        queues: Sequence[Queue] = (),
        routes: Routes = None,
        default_queue: str,
        default_exchange: str = "",
        default_queue_type: str = "classic",
        default_delivery_limit: int | None = None,
    ) -> None:
        self.default_queue = default_queue
        self.default_exchange = default_exchange
        self.default_queue_type = default_queue_type
        self.default_delivery_limit = default_delivery_limit
        self.queues: dict[str, Queue] = {}
        self._implicit: dict[str, Queue] = {}
        for queue in queues:
            if not isinstance(queue, Queue):
                raise ConfigError(f"queues must be Queue objects, got {queue!r}")
            if queue.name in self.queues:
                raise ConfigError(f"queue {queue.name!r} is defined twice")
            if default_exchange and queue.exchange is None and not queue.bindings:
                queue = dataclasses.replace(
                    queue, exchange=Exchange(default_exchange), routing_key=queue.name
                )
            self.queues[queue.name] = queue
        self._routes = _normalise_routes(routes)
        for entry in self._routes:
            if isinstance(entry, Mapping):
                for pattern, spec in entry.items():
                    _check_spec(spec, repr(pattern))

    def queue(self, name: str) -> Queue:
        """The app's queue called ``name``, or an implicit one with default settings."""
        known = self.queues.get(name) or self._implicit.get(name)
        if known is not None:
            return known
        if self.default_exchange:
            made = Queue(name, exchange=Exchange(self.default_exchange), routing_key=name)
        else:
            made = Queue(name)
        if len(self._implicit) >= IMPLICIT_QUEUE_CACHE:
            self._implicit.clear()  # dynamic queue names: keep the cache bounded
        self._implicit[name] = made
        return made

    def lookup(
        self, task_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        """The first route (from ``routes``) matching ``task_name``, if any."""
        for entry in self._routes:
            if isinstance(entry, Mapping):
                if task_name in entry:
                    return _check_spec(entry[task_name], repr(task_name))
                for pattern, spec in entry.items():
                    if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(
                        task_name, pattern
                    ):
                        return _check_spec(spec, repr(pattern))
            else:
                found = entry(task_name, args, kwargs)
                if found is not None:
                    return _check_spec(found, f"returned by {entry!r}")
        return None

    def resolve(
        self,
        task_name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        task_queue: str | None = None,
        queue: str | None = None,
        exchange: str | None = None,
        routing_key: str | None = None,
    ) -> Route:
        """Resolve one call (see the module docstring for the precedence).

        Raises:
            ConfigError: conflicting ``queue=`` and ``routing_key=`` without an exchange.
        """
        priority: int | None = None
        if queue is None and exchange is None and routing_key is None:
            if task_queue is not None:
                queue = task_queue
            else:
                spec = self.lookup(task_name, args, kwargs or {})
                if spec is not None:
                    queue = spec.get("queue")
                    exchange = spec.get("exchange")
                    routing_key = spec.get("routing_key")
                    priority = spec.get("priority")
        if exchange:
            target = self.queue(queue) if queue else None
            key = (
                routing_key
                if routing_key is not None
                else queue or task_queue or self.default_queue
            )
            return Route(exchange, key, target, priority)
        if queue and routing_key and routing_key != queue:
            raise ConfigError(
                f"queue={queue!r} and routing_key={routing_key!r} conflict: without an "
                f"exchange the routing key is the queue name; pass exchange= too, or only one"
            )
        target = self.queue(queue or routing_key or self.default_queue)
        bound = target.exchange_obj
        if bound is not None and not bound.is_default:
            key = target.routing_key if target.routing_key is not None else target.name
            return Route(bound.name, key, target, priority)
        return Route("", target.name, target, priority)

    def declarations(self, route: Route) -> Declarations:
        """What must exist before publishing along ``route``.

        The route's queue, or, for a route to an exchange without a known
        queue, every app queue bound to that exchange.
        """
        if route.queue is not None:
            return route.queue.declarations(self.default_queue_type, self.default_delivery_limit)
        total = Declarations()
        for queue in self.queues.values():
            if any(b.exchange_obj.name == route.exchange for b in queue.all_bindings()):
                total = total + queue.declarations(
                    self.default_queue_type, self.default_delivery_limit
                )
        return total

    def declare_mode(self, queue: Queue | None, app_mode: str) -> str:
        """The effective declare mode of ``queue``."""
        return (queue.declare if queue is not None and queue.declare else None) or app_mode
