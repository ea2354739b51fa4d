"""``amqptasks outbox relay``: publish the Django outbox's rows (docs/django.md#outbox)."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Any

import click

from amqptasks.cli._options import shared_options

if TYPE_CHECKING:
    from amqptasks.app import App


@click.group()
def outbox() -> None:
    """The transactional outbox (amqptasks.contrib.django.outbox)."""


@outbox.command()
@shared_options
@click.option("--batch", type=click.IntRange(min=1), default=500, show_default=True)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.0, min_open=True),
    default=0.5,
    show_default=True,
    help="Seconds between passes when the outbox is drained.",
)
@click.option("--database", default="default", show_default=True, help="Django database alias.")
@click.option("--once", is_flag=True, help="One pass, then exit (cron, tests).")
def relay(app: App, batch: int, interval: float, database: str, once: bool) -> None:
    """Publish outbox rows with confirms; delete each only after its confirm.

    Run one per SQLite database; any number on PostgreSQL/MySQL (SKIP LOCKED).
    """
    from amqptasks.contrib.django.discovery import setup

    setup()
    from amqptasks.contrib.django.outbox.relay import relay_forever, relay_once

    if once:
        click.echo(f"relayed {relay_once(app, batch=batch, using=database)}")
        return
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    click.echo(f"outbox relay ready (database {database!r})")
    try:
        relay_forever(app, batch=batch, interval=interval, using=database, stop=stop)
    finally:
        app.close()
