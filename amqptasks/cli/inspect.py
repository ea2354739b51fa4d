"""``amqptasks inspect COMMAND``: ask workers (amqptasks and Celery alike) what they are doing."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from amqptasks.cli._options import shared_options
from amqptasks.control.client import Control

if TYPE_CHECKING:
    from amqptasks.app import App

#: The inspect commands, as ``celery inspect`` names them.
INSPECT_COMMANDS = (
    "ping",
    "active",
    "reserved",
    "scheduled",
    "registered",
    "stats",
    "active_queues",
    "query_task",
    "revoked",
    "conf",
)


def destination_option(function: click.decorators.FC) -> click.decorators.FC:
    """``-d/--destination NAME,NAME``: only these workers."""
    return click.option(
        "-d",
        "--destination",
        default=None,
        help="Comma-separated worker names (default: every worker).",
    )(function)


def print_answers(answers: list[dict[str, object]], as_json: bool) -> None:
    """Print the workers' answers, one worker per block (or as one JSON object)."""
    merged: dict[str, object] = {}
    for answer in answers:
        merged.update(answer)
    if as_json:
        click.echo(json.dumps(merged, default=repr))
        return
    if not merged:
        click.echo("Error: No nodes replied within time constraint", err=True)
        raise SystemExit(1)
    for hostname, value in sorted(merged.items()):
        click.echo(f"-> {hostname}: {json.dumps(value, default=repr)}")
    click.echo(f"\n{len(merged)} node(s) online.")


@click.command()
@shared_options
@click.argument("command", type=click.Choice(INSPECT_COMMANDS))
@click.argument("ids", nargs=-1)
@destination_option
@click.option("-t", "--timeout", type=float, default=1.0, show_default=True, help="Seconds.")
@click.option("-j", "--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect(
    app: App,
    command: str,
    ids: tuple[str, ...],
    destination: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Ask workers COMMAND (query_task takes task ids) and print each worker's answer."""
    arguments: dict[str, object] = {"ids": list(ids)} if command == "query_task" else {}
    with Control(app.settings.broker) as control:
        answers = control.broadcast(
            command,
            arguments,
            destination=destination.split(",") if destination else None,
            timeout=timeout,
        )
    print_answers(answers, as_json)
