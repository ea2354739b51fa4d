"""Exchanges, queues and bindings as checked values, and what they declare.

:class:`Exchange`, :class:`Queue` and :class:`Binding` are what users write;
:meth:`Queue.declarations` turns a queue into the exact ``exchange.declare``,
``queue.declare`` and ``queue.bind`` frames it needs (its dead-letter queue
included). Everything here is pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from amqptasks.exceptions import ConfigError
from amqptasks.topology import names

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

ExchangeType = Literal["direct", "topic", "fanout", "headers"]
QueueType = Literal["classic", "quorum"]
DeclareMode = Literal["declare", "passive", "off"]
Overflow = Literal["drop-head", "reject-publish", "reject-publish-dlx"]

EXCHANGE_TYPES: tuple[str, ...] = ("direct", "topic", "fanout", "headers")
QUEUE_TYPES: tuple[str, ...] = ("classic", "quorum")
DECLARE_MODES: tuple[str, ...] = ("declare", "passive", "off")
OVERFLOWS: tuple[str, ...] = ("drop-head", "reject-publish", "reject-publish-dlx")

#: AMQP short strings (names, routing keys) are at most 255 bytes.
MAX_NAME_BYTES = 255


def check_name(value: object, what: str, *, allow_empty: bool = False) -> str:
    """Return ``value`` if it is a valid AMQP name, else raise naming ``what``."""
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ConfigError(f"{what} must not be empty")
    if len(value.encode()) > MAX_NAME_BYTES:
        raise ConfigError(f"{what} {value[:40]!r}... is longer than {MAX_NAME_BYTES} bytes")
    return value


def _check_choice(value: object, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ConfigError(f"{what} must be one of {', '.join(choices)}; got {value!r}")


def _positive_number(value: object, what: str, *, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigError(f"{what} must be a whole number, got {value!r}")
    if not value > 0 or math.isinf(value):
        raise ConfigError(f"{what} must be > 0, got {value!r}")


_QUORUM_PRIORITY = (
    "{what}: quorum queues do not take max_priority (x-max-priority); RabbitMQ 4.0+ "
    "quorum queues deliver priority 5-255 messages first without it, 3.x ignores "
    "priorities on them; for more levels use a classic queue"
)


def _millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))


@dataclass(frozen=True)
class Exchange:
    """An exchange. ``Exchange("mail", "topic")``.

    Args:
        name: The exchange name ("" is the default exchange and is never declared).
        type: ``direct``, ``topic``, ``fanout`` or ``headers``.
        durable: Survives a broker restart.
        auto_delete: Deleted when its last binding goes.
        arguments: Extra ``x-*`` arguments (e.g. ``alternate-exchange``).
    """

    name: str
    type: ExchangeType = "direct"
    durable: bool = True
    auto_delete: bool = False
    arguments: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        check_name(self.name, "Exchange name", allow_empty=True)
        _check_choice(self.type, EXCHANGE_TYPES, f"Exchange {self.name!r} type")

    @property
    def is_default(self) -> bool:
        """True for the AMQP default exchange ("")."""
        return self.name == ""

    @property
    def is_builtin(self) -> bool:
        """True for the default exchange and ``amq.*`` ones, which can't be declared."""
        return self.name == "" or self.name.startswith("amq.")


@dataclass(frozen=True)
class Binding:
    """A binding of a queue to an exchange.

    Args:
        exchange: The exchange (or its name; a name means a ``direct`` exchange).
        routing_key: Binding key (a pattern for topic exchanges).
        arguments: Binding arguments (``x-match`` and header values for headers exchanges).
    """

    exchange: Exchange | str
    routing_key: str = ""
    arguments: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        check_name(self.routing_key, "Binding routing_key", allow_empty=True)
        if isinstance(self.exchange, str):
            object.__setattr__(self, "exchange", Exchange(self.exchange))
        if not isinstance(self.exchange, Exchange):
            raise ConfigError(
                f"Binding exchange must be a name or an Exchange, got {self.exchange!r}"
            )
        if self.exchange_obj.is_default:
            raise ConfigError("queues cannot be bound to the default exchange explicitly")

    @property
    def exchange_obj(self) -> Exchange:
        """The exchange as an :class:`Exchange`."""
        assert isinstance(self.exchange, Exchange)
        return self.exchange


@dataclass(frozen=True)
class QueueDeclaration:
    """Exactly what is sent in ``queue.declare``."""

    name: str
    durable: bool = True
    exclusive: bool = False
    auto_delete: bool = False
    arguments: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class BindingDeclaration:
    """Exactly what is sent in ``queue.bind``."""

    queue: str
    exchange: str
    routing_key: str
    arguments: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ExchangeBindingDeclaration:
    """Exactly what is sent in ``exchange.bind`` (messages flow source -> destination)."""

    destination: str
    source: str
    routing_key: str
    arguments: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Declarations:
    """The frames one or more queues need, in the order they must be sent."""

    exchanges: tuple[Exchange, ...] = ()
    queues: tuple[QueueDeclaration, ...] = ()
    bindings: tuple[BindingDeclaration, ...] = ()
    exchange_bindings: tuple[ExchangeBindingDeclaration, ...] = ()

    def __add__(self, other: Declarations) -> Declarations:
        def unique(items: Sequence[Any]) -> tuple[Any, ...]:
            return tuple(dict.fromkeys(items))

        return Declarations(
            exchanges=unique((*self.exchanges, *other.exchanges)),
            queues=unique((*self.queues, *other.queues)),
            bindings=unique((*self.bindings, *other.bindings)),
            exchange_bindings=unique((*self.exchange_bindings, *other.exchange_bindings)),
        )


@dataclass(frozen=True)
class Queue:
    """A work queue and everything it is declared with.

    Args:
        name: Queue name.
        exchange: Bind to this exchange (with ``routing_key``, default the queue name).
        routing_key: Binding key for ``exchange``.
        bindings: More (or instead) bindings.
        queue_type: ``classic`` or ``quorum`` (default: the app's ``default_queue_type``).
        durable: Survives a broker restart (quorum queues always are).
        max_priority: 1-255; declares ``x-max-priority`` (classic queues only).
        message_ttl: Seconds a message may wait in the queue (``x-message-ttl``).
        max_length: Most messages held (``x-max-length``).
        overflow: What happens at ``max_length``: ``drop-head``, ``reject-publish``
            or ``reject-publish-dlx``.
        expires: Seconds unused before the broker deletes the queue (``x-expires``).
        consumer_timeout: Seconds a delivery may stay unacknowledged before the broker
            closes the consumer's channel (``x-consumer-timeout``; RabbitMQ 3.12+,
            older brokers ignore it and apply their node-wide ``consumer_timeout``).
        delivery_limit: Quorum queues: returns of a message before the broker
            dead-letters it (``x-delivery-limit``). Default: the worker's
            ``worker_max_deliveries``, passed to :meth:`declarations`; ``False``
            declares none (the broker's default: unlimited on 3.x, 20 on 4.x).
        single_active_consumer: Only one consumer gets messages at a time.
        dead_letter: True (default) for a DLQ named ``<name>.dlq``, a string to name
            it, or False for none.
        arguments: Extra ``x-*`` arguments, added last.
        declare: ``declare``, ``passive`` or ``off`` (default: the app's ``topology_mode``).

    Example:
        >>> Queue("reports", max_priority=10)
        >>> Queue("mail", exchange=Exchange("mail", "topic"), routing_key="mail.#")
    """

    name: str
    exchange: Exchange | str | None = None
    routing_key: str | None = None
    bindings: Sequence[Binding] = ()
    queue_type: QueueType | None = None
    durable: bool = True
    max_priority: int | None = None
    message_ttl: float | None = None
    max_length: int | None = None
    overflow: Overflow | None = None
    expires: float | None = None
    consumer_timeout: float | None = None
    delivery_limit: int | Literal[False] | None = None
    single_active_consumer: bool = False
    dead_letter: bool | str = True
    arguments: Mapping[str, Any] = field(default_factory=dict, hash=False)
    declare: DeclareMode | None = None

    def __post_init__(self) -> None:
        what = f"Queue {self.name!r}"
        check_name(self.name, "Queue name")
        if self.name.startswith("amq."):
            raise ConfigError(f"{what}: names starting with 'amq.' are reserved by RabbitMQ")
        if isinstance(self.exchange, str):
            object.__setattr__(self, "exchange", Exchange(self.exchange))
        if self.exchange is not None and not isinstance(self.exchange, Exchange):
            raise ConfigError(
                f"{what}: exchange must be a name or an Exchange, got {self.exchange!r}"
            )
        if self.routing_key is not None:
            check_name(self.routing_key, f"{what} routing_key", allow_empty=True)
            if self.exchange is None:
                raise ConfigError(f"{what}: routing_key= needs exchange= too")
        object.__setattr__(self, "bindings", tuple(self.bindings))
        for binding in self.bindings:
            if not isinstance(binding, Binding):
                raise ConfigError(f"{what}: bindings must be Binding objects, got {binding!r}")
        if self.queue_type is not None:
            _check_choice(self.queue_type, QUEUE_TYPES, f"{what} queue_type")
        if self.max_priority is not None:
            if (
                isinstance(self.max_priority, bool)
                or not isinstance(self.max_priority, int)
                or not 1 <= self.max_priority <= 255
            ):
                raise ConfigError(f"{what}: max_priority must be 1-255, got {self.max_priority!r}")
            if self.queue_type == "quorum":
                raise ConfigError(_QUORUM_PRIORITY.format(what=what))
        for attr in ("message_ttl", "expires", "consumer_timeout"):
            value = getattr(self, attr)
            if value is not None:
                _positive_number(value, f"{what} {attr} (seconds)")
        for attr in ("max_length", "delivery_limit"):
            value = getattr(self, attr)
            if value is not None and not (attr == "delivery_limit" and value is False):
                _positive_number(value, f"{what} {attr}", integer=True)
        if self.overflow is not None:
            _check_choice(self.overflow, OVERFLOWS, f"{what} overflow")
        if self.delivery_limit and self.queue_type == "classic":
            raise ConfigError(f"{what}: delivery_limit needs queue_type='quorum'")
        if isinstance(self.dead_letter, str):
            check_name(self.dead_letter, f"{what} dead_letter queue name")
        if self.dead_letter_queue is not None:
            check_name(
                self.dead_letter_queue,
                f"{what} dead-letter queue name "
                f"(shorten the queue name or pass dead_letter='<name>')",
            )
        if self.declare is not None:
            _check_choice(self.declare, DECLARE_MODES, f"{what} declare")

    @property
    def exchange_obj(self) -> Exchange | None:
        """The exchange given as ``exchange=``, as an :class:`Exchange`."""
        assert self.exchange is None or isinstance(self.exchange, Exchange)
        return self.exchange

    @property
    def dead_letter_queue(self) -> str | None:
        """The DLQ's name, or None when ``dead_letter=False``."""
        if self.dead_letter is False:
            return None
        if isinstance(self.dead_letter, str):
            return self.dead_letter
        return names.dead_letter_queue(self.name)

    def all_bindings(self) -> tuple[Binding, ...]:
        """``exchange=``/``routing_key=`` as a binding, then ``bindings=``."""
        exchange = self.exchange_obj
        first: tuple[Binding, ...] = ()
        if exchange is not None and not exchange.is_default:
            key = self.routing_key if self.routing_key is not None else self.name
            first = (Binding(exchange, key),)
        return first + tuple(self.bindings)

    def queue_arguments(
        self, default_type: str = "classic", default_delivery_limit: int | None = None
    ) -> dict[str, Any]:
        """The ``x-*`` arguments of ``queue.declare``.

        Args:
            default_type: The queue type when the queue does not name one.
            default_delivery_limit: ``x-delivery-limit`` of a quorum queue that does
                not set ``delivery_limit`` (the app passes ``worker_max_deliveries``).
        """
        queue_type = self.queue_type or default_type
        args: dict[str, Any] = {}
        if queue_type == "quorum":
            args["x-queue-type"] = "quorum"
        dlq = self.dead_letter_queue
        if dlq is not None:
            args["x-dead-letter-exchange"] = ""
            args["x-dead-letter-routing-key"] = dlq
        if self.max_priority is not None:
            args["x-max-priority"] = self.max_priority
        if self.message_ttl is not None:
            args["x-message-ttl"] = _millis(self.message_ttl)
        if self.max_length is not None:
            args["x-max-length"] = self.max_length
        if self.overflow is not None:
            args["x-overflow"] = self.overflow
        if self.expires is not None:
            args["x-expires"] = _millis(self.expires)
        if self.consumer_timeout is not None:
            args["x-consumer-timeout"] = _millis(self.consumer_timeout)
        delivery_limit = (
            default_delivery_limit if self.delivery_limit is None else self.delivery_limit
        )
        if queue_type == "quorum" and delivery_limit:
            # Always explicit: RabbitMQ 4.0 silently applies 20 to a quorum queue declared
            # without one, 3.x none. https://www.rabbitmq.com/docs/quorum-queues#poison-message-handling
            args["x-delivery-limit"] = delivery_limit
        if self.single_active_consumer:
            args["x-single-active-consumer"] = True
        args.update(self.arguments)
        return args

    def declaration(
        self, default_type: str = "classic", default_delivery_limit: int | None = None
    ) -> QueueDeclaration:
        """The ``queue.declare`` of the queue itself (arguments as :meth:`queue_arguments`)."""
        quorum = (self.queue_type or default_type) == "quorum"
        if quorum and self.max_priority is not None:
            raise ConfigError(_QUORUM_PRIORITY.format(what=f"Queue {self.name!r}"))
        if not quorum and self.delivery_limit:
            raise ConfigError(
                f"Queue {self.name!r}: delivery_limit needs a quorum queue "
                f"(queue_type='quorum' or default_queue_type='quorum')"
            )
        return QueueDeclaration(
            self.name,
            durable=True if quorum else self.durable,
            arguments=self.queue_arguments(default_type, default_delivery_limit),
        )

    def declarations(
        self, default_type: str = "classic", default_delivery_limit: int | None = None
    ) -> Declarations:
        """Exchanges, the DLQ, the queue and its bindings, in declaration order.

        ``default_delivery_limit`` is the ``x-delivery-limit`` of a quorum queue that
        does not set ``delivery_limit`` (the app passes ``worker_max_deliveries``).
        """
        queues: list[QueueDeclaration] = []
        dlq = self.dead_letter_queue
        if dlq is not None:
            queues.append(dead_letter_declaration(dlq, self.queue_type or default_type))
        queues.append(self.declaration(default_type, default_delivery_limit))
        bindings = self.all_bindings()
        exchanges = tuple(
            dict.fromkeys(b.exchange_obj for b in bindings if not b.exchange_obj.is_builtin)
        )
        return Declarations(
            exchanges=exchanges,
            queues=tuple(queues),
            bindings=tuple(
                BindingDeclaration(self.name, b.exchange_obj.name, b.routing_key, dict(b.arguments))
                for b in bindings
            ),
        )


def dead_letter_declaration(name: str, queue_type: str = "classic") -> QueueDeclaration:
    """A dead-letter queue: durable, of the same type as its work queue."""
    args = {"x-queue-type": "quorum"} if queue_type == "quorum" else {}
    return QueueDeclaration(name, arguments=args)


def reply_queue(name: str, expires_seconds: float) -> QueueDeclaration:
    """A client's RPC reply queue.

    Durable with ``x-expires`` rather than exclusive: it survives a reconnect of
    its client (results sent meanwhile wait there) and the broker deletes it
    once nobody has used it for ``expires_seconds``. Transient non-exclusive
    queues are avoided because RabbitMQ 4 removed them.
    """
    return QueueDeclaration(name, arguments={"x-expires": _millis(expires_seconds)})


def chord_queue(name: str, expires_seconds: float) -> QueueDeclaration:
    """One of a chord's own queues (its members' results, its join token).

    Durable, so a broker restart does not lose a chord half-way; with
    ``x-expires``, so the queues of a chord abandoned half-way (its caller and
    members gone) are deleted by the broker once nobody has looked at them for
    ``expires_seconds``. Never transient non-exclusive (RabbitMQ 4 denies them).
    """
    return QueueDeclaration(name, arguments={"x-expires": _millis(expires_seconds)})
