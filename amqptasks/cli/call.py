"""``amqptasks call``: send a task by name, optionally wait for its result."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from amqptasks.cli._options import shared_options
from amqptasks.config import setting_default

if TYPE_CHECKING:
    from amqptasks.app import App


def _json_option(value: str | None, what: str, kind: type) -> Any:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=what) from exc
    if not isinstance(parsed, kind):
        raise click.BadParameter(f"must be a JSON {kind.__name__}", param_hint=what)
    return parsed


@click.command()
@shared_options
@click.argument("task_name")
@click.option("--args", "args_json", default=None, help="Positional arguments as a JSON list.")
@click.option("--kwargs", "kwargs_json", default=None, help="Keyword arguments as a JSON object.")
@click.option("-Q", "--queue", default=None, help="Send to this queue.")
@click.option("--priority", type=click.IntRange(0, 255), default=None)
@click.option("--expires", type=float, default=None, help="Seconds until the task expires.")
@click.option(
    "--serializer",
    default=None,
    help=f"json, msgpack or yaml (default: the app's task_serializer, "
    f"built in {setting_default('task_serializer')}).",
)
@click.option("--wait/--no-wait", default=False, help="Wait for the result and print it.")
@click.option(
    "--timeout", type=float, default=30.0, show_default=True, help="Seconds --wait waits."
)
def call(
    app: App,
    task_name: str,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
    priority: int | None,
    expires: float | None,
    serializer: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Send TASK_NAME (no need to import its code) and print its id or, with --wait, result."""
    args = _json_option(args_json, "--args", list)
    kwargs = _json_option(kwargs_json, "--kwargs", dict)
    options: dict[str, Any] = {
        key: value
        for key, value in {
            "queue": queue,
            "priority": priority,
            "expires": expires,
            "serializer": serializer,
            "ignore_result": False if wait else None,
        }.items()
        if value is not None
    }
    try:
        result = app.send_task(task_name, args, kwargs, **options)
        if not wait:
            click.echo(result.id)
            return
        value = result.get(timeout=timeout, propagate=False)
        if result.successful():
            click.echo(json.dumps(value, default=repr))
        else:
            raise click.ClickException(
                f"task {result.id} {result.state}: {type(value).__name__}: {value}"
            )
    finally:
        app.close()
