"""``amqptasks control COMMAND``: change running workers (amqptasks and Celery alike)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from amqptasks.cli._options import shared_options
from amqptasks.cli.inspect import destination_option, print_answers
from amqptasks.control.client import Control

if TYPE_CHECKING:
    from amqptasks.app import App

_timeout = click.option("-t", "--timeout", type=float, default=1.0, show_default=True)
_json = click.option("-j", "--json", "as_json", is_flag=True, help="Print one JSON object.")


@click.group()
def control() -> None:
    """Change running workers: rate and time limits, revokes, consumers, shutdown."""


def _call(
    app: App,
    method: str,
    arguments: dict[str, object],
    destination: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    with Control(app.settings.broker) as client:
        answers = client.broadcast(
            method,
            arguments,
            destination=destination.split(",") if destination else None,
            timeout=timeout,
        )
    print_answers(answers, as_json)


@control.command("rate_limit")
@shared_options
@click.argument("task_name")
@click.argument("rate")
@destination_option
@_timeout
@_json
def rate_limit(
    app: App, task_name: str, rate: str, destination: str | None, timeout: float, as_json: bool
) -> None:
    """Set TASK_NAME's rate limit (10/s, 5/m, 0 to lift it) on running workers."""
    arguments: dict[str, object] = {"task_name": task_name, "rate_limit": rate}
    _call(app, "rate_limit", arguments, destination, timeout, as_json)


@control.command("time_limit")
@shared_options
@click.argument("task_name")
@click.argument("soft", type=float)
@click.argument("hard", type=float, required=False)
@destination_option
@_timeout
@_json
def time_limit(
    app: App,
    task_name: str,
    soft: float,
    hard: float | None,
    destination: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Set TASK_NAME's soft (and hard) time limits on running workers."""
    arguments = {"task_name": task_name, "soft": soft, "hard": hard}
    _call(app, "time_limit", arguments, destination, timeout, as_json)


@control.command("revoke")
@shared_options
@click.argument("task_ids", nargs=-1, required=True)
@click.option(
    "--expires",
    type=float,
    default=None,
    help="Seconds the revoke holds (default: 7 days, the revokes stream's retention).",
)
def revoke(app: App, task_ids: tuple[str, ...], expires: float | None) -> None:
    """Revoke TASK_IDS on the broker: no worker runs them, also workers that start later."""
    import time

    with Control(app.settings.broker) as client:
        client.revoke(list(task_ids), expires=time.time() + expires if expires else None)
    click.echo(f"revoked: {', '.join(task_ids)}")


@control.command("add_consumer")
@shared_options
@click.argument("queue")
@destination_option
@_timeout
@_json
def add_consumer(
    app: App, queue: str, destination: str | None, timeout: float, as_json: bool
) -> None:
    """Make running workers consume QUEUE too."""
    _call(app, "add_consumer", {"queue": queue}, destination, timeout, as_json)


@control.command("cancel_consumer")
@shared_options
@click.argument("queue")
@destination_option
@_timeout
@_json
def cancel_consumer(
    app: App, queue: str, destination: str | None, timeout: float, as_json: bool
) -> None:
    """Make running workers stop consuming QUEUE."""
    _call(app, "cancel_consumer", {"queue": queue}, destination, timeout, as_json)


def _command_without_arguments(name: str, help_text: str) -> None:
    """Register ``control NAME``, a command that sends no arguments."""

    @control.command(name, help=help_text)
    @shared_options
    @destination_option
    @_timeout
    @_json
    def command(app: App, destination: str | None, timeout: float, as_json: bool) -> None:
        _call(app, name, {}, destination, timeout, as_json)


for _name, _help in (
    ("shutdown", "Stop running workers (warm)."),
    (
        "enable_events",
        "Make running workers send task events (as -E does), for Flower and `events`.",
    ),
    ("disable_events", "Make running workers stop sending task events (those noted still go out)."),
):
    _command_without_arguments(_name, _help)
