"""``amqptasks dlq ls|show|replay|purge QUEUE`` and ``amqptasks delays status``."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from amqptasks.cli._options import shared_options
from amqptasks.deadletters import Operator

if TYPE_CHECKING:
    from amqptasks.app import App

_limit = click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="At most this many messages."
)


@click.group()
def dlq() -> None:
    """Look at, replay or purge a work queue's dead-letter queue (QUEUE or QUEUE.dlq)."""


@dlq.command("ls")
@shared_options
@click.argument("queue")
def ls(app: App, queue: str) -> None:
    """Count the dead letters of QUEUE and tabulate their reasons (nothing is removed)."""
    operator = Operator(app)
    dlq_name = operator.dead_letter_queue(queue)
    letters = operator.peek(queue)
    console = Console(width=160)
    console.print(f"{dlq_name}: {len(letters)} message(s)")
    table = Table()
    for column in ("reason", "task", "exception", "count"):
        table.add_column(column)
    counts = Counter((d.reason, d.task, d.exc_type) for d in letters)
    for (reason, task, exc_type), count in counts.most_common():
        table.add_row(reason, task, exc_type or "-", str(count))
    console.print(table)


@dlq.command()
@shared_options
@click.argument("queue")
@_limit
def show(app: App, queue: str, limit: int | None) -> None:
    """Print the dead letters of QUEUE with why they are there (nothing is removed)."""
    operator = Operator(app)
    letters = operator.peek(queue, limit or 20)
    if not letters:
        click.echo(f"no dead letters in {operator.dead_letter_queue(queue)}")
    for letter in letters:
        click.echo(f"- {letter.task} {letter.task_id}")
        click.echo(f"    reason:   {letter.reason}")
        if letter.error:
            click.echo(f"    error:    {letter.exc_type}: {letter.error}")
        if letter.attempts is not None:
            click.echo(f"    attempts: {letter.attempts}")
        click.echo(f"    args:     {letter.args_repr}")
        click.echo(
            f"    from:     exchange {letter.original_exchange or '(default)'!r}, "
            f"routing key {letter.original_routing_key!r}"
        )
        click.echo(f"    when:     {letter.dead_lettered_at}  by {letter.worker or '?'}")
        if letter.traceback:
            last = letter.traceback.strip().splitlines()[-1]
            click.echo(f"    last traceback line: {last}")


@dlq.command()
@shared_options
@click.argument("queue")
@click.option("--task", "task_name", default=None, help="Only dead letters of this task.")
@click.option("--reason", default=None, help="Only this reason (e.g. max-retries-exceeded).")
@_limit
def replay(
    app: App, queue: str, task_name: str | None, reason: str | None, limit: int | None
) -> None:
    """Send dead letters back to QUEUE (confirmed before removal from the DLQ)."""
    count = Operator(app).replay(queue, task=task_name, reason=reason, limit=limit)
    click.echo(f"replayed {count} message(s) to {Operator(app).work_queue(queue)}")


@dlq.command()
@shared_options
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(app: App, queue: str, yes: bool) -> None:
    """Delete every dead letter of QUEUE."""
    operator = Operator(app)
    dlq_name = operator.dead_letter_queue(queue)
    if not yes:
        click.confirm(
            f"delete all {operator.count(dlq_name)} message(s) of {dlq_name}?", abort=True
        )
    click.echo(f"purged {operator.purge(queue)} message(s) from {dlq_name}")


@click.group()
def delays() -> None:
    """The broker-held delay levels (countdown, eta, retry backoff)."""


@delays.command()
@shared_options
def status(app: App) -> None:
    """Messages waiting at each delay level."""
    levels = Operator(app).delay_levels()
    if not levels:
        click.echo(f"no delay levels declared yet (prefix {app.settings.delay_prefix!r})")
        return
    table = Table(title=f"delay levels ({app.settings.delay_prefix})")
    for column in ("level", "holds for", "waiting", "queue"):
        table.add_column(column)
    for level, waiting, name in levels:
        table.add_row(str(level), _span(2**level), str(waiting), name)
    Console(width=160).print(table)
    click.echo(f"total waiting: {sum(w for _l, w, _n in levels)}")


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds} s"
