"""``amqptasks status`` (which workers answer) and ``amqptasks purge QUEUE``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
import pika
import pika.exceptions

from amqptasks.cli._options import shared_options
from amqptasks.control.client import Control
from amqptasks.transport import _pika, errors

if TYPE_CHECKING:
    from amqptasks.app import App


@click.command()
@shared_options
@click.option("-t", "--timeout", type=float, default=1.0, show_default=True, help="Seconds.")
def status(app: App, timeout: float) -> None:
    """List the workers that answer a ping (amqptasks workers with --control, Celery workers)."""
    with Control(app.settings.broker) as control:
        answers = control.broadcast("ping", timeout=timeout)
    names = sorted(name for answer in answers for name in answer)
    for name in names:
        click.echo(f"-> {name}: OK")
    if not names:
        click.echo("Error: No nodes replied within time constraint", err=True)
        raise SystemExit(1)
    click.echo(f"\n{len(names)} node(s) online.")


@click.command()
@shared_options
@click.argument("queue")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def purge(app: App, queue: str, force: bool) -> None:
    """Delete every message waiting in QUEUE (not those its workers hold unacked)."""
    if not force:
        click.confirm(f"Delete every message waiting in {queue!r}?", abort=True)
    url = app.settings.broker
    try:
        connection = pika.BlockingConnection(_pika.every_node_parameters(url, "amqptasks purge"))
    except Exception as exc:
        raise errors.connect_error(exc, url) from exc
    try:
        frame = connection.channel().queue_purge(queue)
    except pika.exceptions.ChannelClosedByBroker as exc:
        raise errors.channel_error(exc.reply_code, exc.reply_text, f"queue {queue!r}") from exc
    finally:
        if connection.is_open:
            connection.close()
    click.echo(f"purged {frame.method.message_count} message(s) from {queue}")
