"""``amqptasks beat``: run a beat process, change runtime entries, show the schedule."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Any

import click

from amqptasks import __version__
from amqptasks.beat.control import change_entry, status
from amqptasks.beat.entries import Entry
from amqptasks.beat.scheduler import Beat
from amqptasks.beat.schedules import at, cron, every, get_zone
from amqptasks.cli._options import group_options, need_app
from amqptasks.cli.call import _json_option
from amqptasks.config import CATCH_UP_POLICIES
from amqptasks.exceptions import AmqptasksError, ConfigError
from amqptasks.logging import redact

if TYPE_CHECKING:
    import datetime as dt

    from amqptasks.app import App


async def _run(beat: Beat) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, beat.stop)
    await beat.run()


@click.group(invoke_without_command=True)
@group_options
@click.option("-n", "--node-name", default=None, help="Name in the history (beat@host:pid).")
@click.pass_context
def beat(ctx: click.Context, app: App | None, node_name: str | None) -> None:
    """Run a beat (any number may run: the broker elects the one that sends), or
    change and show the schedule with a subcommand: amqptasks beat -A proj:app status."""
    ctx.obj = app
    if ctx.invoked_subcommand is not None:
        return
    app = need_app(app)
    runner = Beat(app, node_name=node_name)
    entries = runner.code_entries()
    click.echo(
        f"amqptasks {__version__} beat {runner.node_name}\n"
        f"  app:     {app.main}\n"
        f"  broker:  {app.settings.broker.redacted()}\n"
        f"  entries: {len(entries)} in code (runtime ones are on the broker)\n"
        "beat ready",
        err=True,
    )
    asyncio.run(_run(runner))


def _change(app: App | None, op: str, name: str, entry: Entry | None = None) -> None:
    try:
        asyncio.run(change_entry(need_app(app), op, name, entry))
    except AmqptasksError as exc:
        raise click.ClickException(redact(f"{type(exc).__name__}: {exc}")) from exc
    click.echo(f"{op} {name}: recorded")


@beat.command()
@click.argument("name")
@click.option("--task", "task_name", required=True, help="The task's registered name.")
@click.option("--cron", "cron_expr", default=None, help='A cron expression, e.g. "0 3 * * 1-5".')
@click.option("--every", "seconds", type=float, default=None, help="Every this many seconds.")
@click.option("--at", "when", type=click.DateTime(), default=None, help="Once, at this time.")
@click.option("--args", "args_json", default=None, help="Positional arguments as a JSON list.")
@click.option("--kwargs", "kwargs_json", default=None, help="Keyword arguments as JSON.")
@click.option("-Q", "--queue", default=None, help="Send to this queue.")
@click.option("--priority", type=click.IntRange(0, 255), default=None)
@click.option("--expires", type=float, default=None, help="Seconds after each occurrence.")
@click.option("--timezone", default=None, help="IANA zone of --cron/--at (default: the app's).")
@click.option("--catch-up", type=click.Choice(list(CATCH_UP_POLICIES)), default=None)
@click.option("--catch-up-window", type=click.FloatRange(min=0, min_open=True), default=None)
@click.pass_obj
def add(
    app: App | None,
    name: str,
    task_name: str,
    cron_expr: str | None,
    seconds: float | None,
    when: dt.datetime | None,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
    priority: int | None,
    expires: float | None,
    timezone: str | None,
    catch_up: str | None,
    catch_up_window: float | None,
) -> None:
    """Add (or replace) runtime entry NAME; the leader picks it up within moments."""
    app = need_app(app)
    given = [value for value in (cron_expr, seconds, when) if value is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --cron, --every and --at")
    options: dict[str, Any] = {
        key: value
        for key, value in (("queue", queue), ("priority", priority), ("expires", expires))
        if value is not None
    }
    try:
        schedule = (
            cron(cron_expr)
            if cron_expr is not None
            else every(seconds)
            if seconds is not None
            else at(when)  # type: ignore[arg-type]
        )
        entry = Entry(
            name=name,
            task=task_name,
            schedule=schedule,
            args=tuple(_json_option(args_json, "--args", list) or ()),
            kwargs=_json_option(kwargs_json, "--kwargs", dict) or {},
            options=options,
            timezone=timezone,
            catch_up=catch_up,
            catch_up_window=catch_up_window,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    _change(app, "add", name, entry)


def _simple(op: str, help_text: str) -> click.Command:
    @click.argument("name")
    @click.pass_obj
    def command(app: App | None, name: str) -> None:
        _change(app, op, name)

    command.__doc__ = help_text
    return beat.command(name=op)(command)


_simple("remove", "Remove runtime entry NAME (entries declared in code can only be paused).")
_simple("pause", "Pause entry NAME: its occurrences are not sent (nor caught up on resume).")
_simple("resume", "Resume entry NAME from now.")
_simple("trigger", "Send entry NAME once, now (its task id is recorded like any occurrence).")


def _when(instant: dt.datetime | None, zone: str) -> str:
    if instant is None:
        return "-"
    return instant.astimezone(get_zone(zone)).isoformat(timespec="seconds")


@beat.command(name="status")
@click.pass_obj
def status_command(app: App | None) -> None:
    """Show every entry: schedule, last sent occurrence and task id, next one, paused; and
    which process leads."""
    try:
        found = asyncio.run(status(need_app(app)))
    except AmqptasksError as exc:
        raise click.ClickException(redact(f"{type(exc).__name__}: {exc}")) from exc
    leader = (
        f"{found.leader} (last tick {found.leader_seen.isoformat(timespec='seconds')})"
        if found.leader and found.leader_seen
        else "none seen"
    )
    click.echo(f"leader: {leader}; beat processes connected: {found.processes}")
    for row in found.entries:
        zone = row.entry.timezone or "UTC"
        click.echo(
            f"{row.entry.name}  [{row.source}{', paused' if row.paused else ''}]\n"
            f"  task:     {row.entry.task}\n"
            f"  schedule: {row.entry.schedule.describe()} ({zone}; catch-up "
            f"{row.entry.catch_up}, window {row.entry.catch_up_window:g}s)\n"
            f"  last:     {_when(row.last_instant, zone)}  {row.last_task_id or ''}\n"
            f"  next:     {_when(row.next_instant, zone)}"
        )
