"""``amqptasks result ID``: what is known of a task, by id (``celery result`` for the rpc style)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from amqptasks.cli._options import shared_options
from amqptasks.control.lookup import find_task
from amqptasks.results import states

if TYPE_CHECKING:
    from amqptasks.app import App
    from amqptasks.control.lookup import Finding

#: Said of an id nobody holds: where its result may be instead.
PENDING_NOTE = (
    "not held by a worker, not revoked, not in a dead-letter queue: it waits in a queue "
    "or the delay levels, or it finished and its result went to the caller's reply queue "
    "only (results are not stored), or the id is unknown"
)


@click.command()
@shared_options
@click.argument("task_id")
@click.option(
    "-t",
    "--task",
    "task_name",
    default=None,
    help="The task's name (searches its queue's dead-letter queue).",
)
@click.option(
    "-Q",
    "--queue",
    "queues",
    multiple=True,
    help="A work queue whose dead-letter queue to search (repeatable; default: the app's).",
)
@click.option("--traceback", "show_traceback", is_flag=True, help="Show the traceback instead.")
@click.option(
    "--timeout", type=float, default=1.0, show_default=True, help="Seconds to wait for workers."
)
@click.option("-j", "--json", "as_json", is_flag=True, help="Print one JSON object.")
def result(
    app: App,
    task_id: str,
    task_name: str | None,
    queues: tuple[str, ...],
    show_traceback: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Show the state of task TASK_ID: running or prefetched on a worker, revoked, or
    failed for good (from its dead-letter queue, with the traceback); PENDING otherwise.

    A successful task's value went to its caller's reply queue and is not stored:
    only the caller has it (AsyncResult.get()).
    """
    found = find_task(app, task_id, task=task_name, queues=list(queues) or None, timeout=timeout)
    if task_name is not None and found.task not in (None, task_name):
        raise click.ClickException(
            f"task {task_id} is a {found.task}, not a {task_name} (drop --task to see it)"
        )
    if as_json:
        click.echo(json.dumps(found.as_dict(), default=repr))
        return
    if show_traceback:
        if found.traceback:
            click.echo(found.traceback.rstrip("\n"))
        else:
            click.echo(f"no traceback for task {task_id} (state {found.state})", err=True)
        return
    _print(found)


def _print(found: Finding) -> None:
    click.echo(f"id:     {found.id}")
    click.echo(f"state:  {found.state}")
    for label, value in (
        ("task", found.task),
        ("where", found.source),
        ("worker", found.worker),
        ("result", found.result),
    ):
        if value:
            click.echo(f"{label + ':':<8}{value}")
    for key, value in found.details.items():
        if value not in (None, ""):
            click.echo(f"{key + ':':<8}{value}" if len(key) < 7 else f"{key}: {value}")
    if found.state == states.PENDING:
        click.echo(f"note:   {PENDING_NOTE}", err=True)
