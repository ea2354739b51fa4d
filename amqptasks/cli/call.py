"""``amqptasks call``: send a task by name, optionally wait for its result."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click
import pika
import pika.exceptions

from amqptasks.cli._options import shared_options
from amqptasks.config import setting_default
from amqptasks.transport import errors
from amqptasks.transport._pika import every_node_parameters

if TYPE_CHECKING:
    from amqptasks.app import App


def _queue_state(app: App, queue: str) -> tuple[int, int] | None:
    """``(messages, consumers)`` of ``queue`` (a passive declare), None if it does not exist."""
    url = app.settings.broker
    try:
        connection = pika.BlockingConnection(every_node_parameters(url, "amqptasks call"))
    except Exception as exc:
        raise errors.connect_error(exc, url) from exc
    try:
        frame = connection.channel().queue_declare(queue, passive=True)
        return int(frame.method.message_count), int(frame.method.consumer_count)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return None
        raise errors.channel_error(exc.reply_code, exc.reply_text, f"queue {queue!r}") from exc
    finally:
        if connection.is_open:
            connection.close()


def _check_queue(app: App, queue: str, *, wait: bool, create: bool) -> None:
    """Refuse a queue nobody knows (a typo would create it); say when nothing consumes it."""
    state = _queue_state(app, queue)
    known = queue in app.router.queues or queue == app.settings.default_queue
    if state is None and not (known or create):
        raise click.ClickException(
            f"queue {queue!r} does not exist on the broker and the app does not declare it: "
            f"no worker consumes it (a typo?). Pass --create-queue to create it and send anyway"
        )
    if wait and (state is None or state[1] == 0):
        click.echo(
            f"warning: no worker consumes queue {queue!r} now; the task waits there "
            f"until one does (--timeout applies)",
            err=True,
        )


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
    "--create-queue",
    is_flag=True,
    default=False,
    help="Send even to a queue that neither the broker nor the app knows (it is created).",
)
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
    create_queue: bool,
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
        route = app.router.resolve(task_name, args or (), kwargs or {}, queue=queue)
        if route.queue is not None:
            _check_queue(app, route.queue.name, wait=wait, create=create_queue)
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
