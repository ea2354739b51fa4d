"""Run topology declaration steps with pika (a short-lived blocking connection).

Declarations happen once per destination and process, so a separate blocking
connection keeps this simple and off the publishing I/O thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions

from amqptasks.topology.declare import Step, declaration_steps, differences_from_text
from amqptasks.topology.model import (
    BindingDeclaration,
    Exchange,
    ExchangeBindingDeclaration,
    QueueDeclaration,
)
from amqptasks.transport import errors
from amqptasks.transport._pika import every_node_parameters

if TYPE_CHECKING:
    from amqptasks.config import BrokerURL
    from amqptasks.topology.management import Management
    from amqptasks.topology.model import Declarations


def _execute(channel: Any, step: Step) -> None:
    target = step.target
    if isinstance(target, Exchange):
        channel.exchange_declare(
            target.name,
            target.type,
            passive=step.passive,
            durable=target.durable,
            auto_delete=target.auto_delete,
            arguments=dict(target.arguments),
        )
    elif isinstance(target, QueueDeclaration):
        channel.queue_declare(
            target.name,
            passive=step.passive,
            durable=target.durable,
            exclusive=target.exclusive,
            auto_delete=target.auto_delete,
            arguments=dict(target.arguments),
        )
    elif isinstance(target, BindingDeclaration):
        channel.queue_bind(
            target.queue, target.exchange, target.routing_key, arguments=dict(target.arguments)
        )
    elif isinstance(target, ExchangeBindingDeclaration):
        channel.exchange_bind(
            target.destination, target.source, target.routing_key, arguments=dict(target.arguments)
        )
    else:
        raise TypeError(f"unknown declaration step {step!r}")


def apply_declarations(
    url: BrokerURL,
    declarations: Declarations,
    mode: str,
    *,
    management: Management | None,
    connection_name: str,
) -> None:
    """Declare/verify ``declarations`` in ``mode`` (see :mod:`amqptasks.topology.declare`).

    Raises:
        TopologyMismatch, NotFound, AccessRefused, BrokerUnreachable, AuthenticationFailed.
    """
    flow = declaration_steps(declarations, mode)
    try:
        step = next(flow)
    except StopIteration:
        return
    try:
        connection = pika.BlockingConnection(every_node_parameters(url, connection_name))
    except Exception as exc:
        raise errors.connect_error(exc, url) from exc
    try:
        channel = connection.channel()
        while True:
            answer: Any = None
            if step.kind == "live":
                assert isinstance(step.target, tuple)
                kind, name = step.target
                answer = management.live(kind, name) if management else None
            else:
                try:
                    _execute(channel, step)
                except pika.exceptions.ChannelClosedByBroker as exc:
                    answer = errors.channel_error(exc.reply_code, exc.reply_text)
                    channel = connection.channel()
                except pika.exceptions.AMQPConnectionError as exc:
                    raise errors.connection_lost(exc, url, "declaring topology") from exc
            try:
                step = flow.send(answer)
            except StopIteration:
                return
    finally:
        if connection.is_open:
            connection.close()


def probe(
    url: BrokerURL,
    declarations: Declarations,
    *,
    connection_name: str,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Live queues and exchanges found over AMQP alone (no management API).

    Each object is checked passively; one that exists is then declared with
    the wanted arguments, which changes nothing when they are equal and gets a
    406 naming the first differing argument when they are not.

    Returns:
        ``(queues, exchanges)``: name -> ``{"arguments": ..., "durable": ...}`` for
        the objects that exist.
    """
    queues: dict[str, dict[str, Any]] = {}
    exchanges: dict[str, dict[str, Any]] = {}
    try:
        connection = pika.BlockingConnection(every_node_parameters(url, connection_name))
    except Exception as exc:
        raise errors.connect_error(exc, url) from exc
    try:
        targets: list[Exchange | QueueDeclaration] = [*declarations.exchanges, *declarations.queues]
        for target in targets:
            channel = connection.channel()
            found = exchanges if isinstance(target, Exchange) else queues
            try:
                _execute(
                    channel,
                    Step(
                        "exchange" if isinstance(target, Exchange) else "queue",
                        target,
                        passive=True,
                    ),
                )
            except pika.exceptions.ChannelClosedByBroker:
                continue  # missing
            live: dict[str, Any] = {"arguments": dict(target.arguments), "durable": target.durable}
            if isinstance(target, Exchange):
                live["type"] = target.type
            try:
                _execute(
                    channel, Step("exchange" if isinstance(target, Exchange) else "queue", target)
                )
            except pika.exceptions.ChannelClosedByBroker as exc:
                for argument, current, _wanted in differences_from_text(exc.reply_text):
                    if current is None:
                        live["arguments"].pop(argument, None)
                    else:
                        live["arguments"][argument] = current
                if not differences_from_text(exc.reply_text):
                    live["arguments"]["?"] = exc.reply_text
            found[target.name] = live
            if channel.is_open:
                channel.close()
    finally:
        if connection.is_open:
            connection.close()
    return queues, exchanges
