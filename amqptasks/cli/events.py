"""``amqptasks events``: a live terminal view of the fleet, from Celery's events."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from typing import TYPE_CHECKING

import click
import pika
from rich.console import Console
from rich.live import Live

from amqptasks.cli._options import shared_options
from amqptasks.control.events import EVENT_EXCHANGE, events_in
from amqptasks.control.monitor import FleetView
from amqptasks.deadletters import Operator
from amqptasks.transport import _pika

if TYPE_CHECKING:
    from amqptasks.app import App

#: Seconds between two redraws (and two looks at the queues' depths).
REFRESH = 1.0


def _depths(app: App, queues: list[str]) -> list[tuple[str, int | None]]:
    operator = Operator(app)
    found: list[tuple[str, int | None]] = []
    for queue in queues:
        for name in (queue, f"{queue}.dlq"):
            try:
                found.append((name, operator.count(name)))
            except Exception:
                found.append((name, None))
    try:
        levels = operator.delay_levels()
    except Exception:
        levels = []
    found.append(("delay levels (all)", sum(waiting for _l, waiting, _n in levels)))
    return found


@click.command()
@shared_options
@click.option(
    "-Q", "--queues", default=None, help="Comma-separated queues to show (default: the app's)."
)
@click.option(
    "--duration",
    type=float,
    default=None,
    help="Stop after this many seconds and print the last view (default: until Ctrl-C).",
)
def events(app: App, queues: str | None, duration: float | None) -> None:
    """Watch workers, tasks per second per state, failures and queue depths, live.

    Needs workers started with -E (amqptasks or Celery workers alike).
    """
    names = queues.split(",") if queues else [app.settings.default_queue]
    parameters = _pika.every_node_parameters(app.settings.broker, "amqptasks events")
    connection = pika.BlockingConnection(parameters)
    channel = connection.channel()
    channel.exchange_declare(EVENT_EXCHANGE.name, EVENT_EXCHANGE.type, durable=True)
    # Exclusive (allowed on RabbitMQ 4.3); events older than a minute are not worth showing.
    queue = f"amqptasks.events.{uuid.uuid4().hex[:12]}"
    channel.queue_declare(queue, exclusive=True, arguments={"x-message-ttl": 60_000})
    channel.queue_bind(queue, EVENT_EXCHANGE.name, "#")
    view = FleetView()
    console = Console(width=160)
    click.echo(f"listening to {EVENT_EXCHANGE.name}", err=True)
    deadline = time.monotonic() + duration if duration is not None else None
    try:
        with Live(view.render(), console=console, auto_refresh=False, transient=False) as live:
            while deadline is None or time.monotonic() < deadline:
                drawn = time.monotonic()
                for method, _properties, body in channel.consume(
                    queue, auto_ack=True, inactivity_timeout=REFRESH
                ):
                    if method is not None:
                        with contextlib.suppress(ValueError):
                            for event in events_in(json.loads(body)):
                                view.add(event)
                    if method is None or time.monotonic() - drawn >= REFRESH:
                        break
                live.update(view.render(_depths(app, names)), refresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        if connection.is_open:
            connection.close()
