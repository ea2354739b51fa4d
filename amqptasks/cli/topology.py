"""``amqptasks topology show|diff|apply|export``: see, compare and declare the topology."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from amqptasks.cli._options import shared_options
from amqptasks.topology.diff import compare
from amqptasks.topology.export import definitions
from amqptasks.transport import aio
from amqptasks.transport.declare_sync import probe

if TYPE_CHECKING:
    from amqptasks.app import App
    from amqptasks.topology.model import Declarations

_queues_option = click.option(
    "-Q",
    "--queues",
    default=None,
    help="Only these comma-separated queues (default: every queue the app defines).",
)


_delays_option = click.option(
    "--delays/--no-delays",
    "with_delays",
    default=True,
    show_default=True,
    help="Include the shared delay levels and the hop queues of these queues.",
)


def _selected(app: App, queues: str | None, with_delays: bool = False) -> Declarations:
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    return app.declarations(names, include_delays=with_delays)


def _args(arguments: Any) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in dict(arguments).items()) or "-"


@click.group()
def topology() -> None:
    """Show, compare, declare or export the exchanges, queues and bindings of an app."""


@topology.command()
@shared_options
@_queues_option
def show(app: App, queues: str | None) -> None:
    """Print what the app expects on the broker, and its routes."""
    wanted = _selected(app, queues)
    console = Console(width=160)
    settings = app.settings
    table = Table(
        title=f"queues (default type {settings.default_queue_type}, mode {settings.topology_mode})"
    )
    for column in ("queue", "durable", "arguments", "declare"):
        table.add_column(column)
    for queue in wanted.queues:
        spec = app.router.queues.get(queue.name)
        mode = app.router.declare_mode(spec, settings.topology_mode) if spec else "with its queue"
        table.add_row(queue.name, str(queue.durable), _args(queue.arguments), mode)
    console.print(table)
    if wanted.exchanges:
        exchanges = Table(title="exchanges")
        for column in ("exchange", "type", "durable", "arguments"):
            exchanges.add_column(column)
        for exchange in wanted.exchanges:
            exchanges.add_row(
                exchange.name, exchange.type, str(exchange.durable), _args(exchange.arguments)
            )
        console.print(exchanges)
    if wanted.bindings:
        bindings = Table(title="bindings")
        for column in ("exchange", "routing key", "queue", "arguments"):
            bindings.add_column(column)
        for binding in wanted.bindings:
            bindings.add_row(
                binding.exchange, binding.routing_key, binding.queue, _args(binding.arguments)
            )
        console.print(bindings)
    routes = Table(title="tasks")
    for column in ("task", "exchange", "routing key", "queue"):
        routes.add_column(column)
    for name in app.tasks:
        task = app.tasks.get(name)
        try:
            route = app.router.resolve(name, task_queue=task.queue)
        except Exception:  # a router function that needs the call's arguments
            routes.add_row(name, "decided per call by a router function", "", "")
            continue
        routes.add_row(
            name,
            route.exchange or "(default)",
            route.routing_key,
            route.queue.name if route.queue else "-",
        )
    console.print(routes)


@topology.command()
@shared_options
@_queues_option
@_delays_option
def diff(app: App, queues: str | None, with_delays: bool) -> None:
    """Compare the live broker with the app: missing, different and extra objects.

    Uses the management API when it answers (every argument, and extras);
    otherwise AMQP probes (the first differing argument of each object).
    Exits with 1 when anything is missing or different.
    """
    wanted = _selected(app, queues, with_delays)
    management = app.management()
    live_queues_list = management.queues()
    if live_queues_list is not None:
        live_queues = {q["name"]: q for q in live_queues_list}
        live_exchanges = {e["name"]: e for e in management.exchanges() or []}
        live_bindings = [
            (b["source"], b["destination"], b["routing_key"])
            for b in management.bindings() or []
            if b.get("destination_type") == "queue"
        ]
        source = f"management API at {management.base_url}"
        rows = compare(wanted, live_queues, live_exchanges, live_bindings)
    else:
        # Probes only look at the app's own objects, so no extras can be listed.
        probed_queues, probed_exchanges = probe(
            app.settings.broker, wanted, connection_name="amqptasks topology diff"
        )
        source = "AMQP probes; management API not reachable, so extras are not listed"
        rows = compare(wanted, probed_queues, probed_exchanges, None)
    console = Console(width=160)
    table = Table(title=f"{app.settings.broker.redacted()} vs app {app.main} ({source})")
    for column in ("kind", "name", "status", "detail"):
        table.add_column(column)
    for row in rows:
        style = {"ok": "green", "missing": "red", "different": "red", "extra": "yellow"}[row.status]
        table.add_row(row.kind, row.name, f"[{style}]{row.status}[/{style}]", row.detail)
    console.print(table)
    if any(row.status in ("missing", "different") for row in rows):
        raise SystemExit(1)


@topology.command()
@shared_options
@_queues_option
@_delays_option
@click.option("--dry-run", is_flag=True, help="Print what would be declared; change nothing.")
def apply(app: App, queues: str | None, with_delays: bool, dry_run: bool) -> None:
    """Declare every exchange, queue and binding the app needs (mismatches are reported)."""
    wanted = _selected(app, queues, with_delays)
    for exchange in wanted.exchanges:
        click.echo(f"exchange {exchange.name} ({exchange.type}) {_args(exchange.arguments)}")
    for queue in wanted.queues:
        click.echo(f"queue    {queue.name} {_args(queue.arguments)}")
    for binding in wanted.bindings:
        click.echo(f"binding  {binding.exchange} -> {binding.queue} ({binding.routing_key!r})")
    if dry_run:
        click.echo("dry run: nothing declared")
        return

    async def run() -> None:
        connection = await aio.connect(app.settings.broker, "amqptasks topology apply")
        try:
            await aio.apply_declarations(connection, wanted, "declare", management=app.management())
        finally:
            await connection.close()

    asyncio.run(run())
    click.echo("declared")


@topology.command()
@shared_options
@_queues_option
@_delays_option
@click.option("--vhost", default=None, help="Vhost in the definitions (default: the URL's).")
def export(app: App, queues: str | None, with_delays: bool, vhost: str | None) -> None:
    """Print RabbitMQ definitions JSON for ``rabbitmqctl import_definitions``."""
    document = definitions(_selected(app, queues, with_delays), vhost or app.settings.broker.vhost)
    click.echo(json.dumps(document, indent=2, sort_keys=True))
