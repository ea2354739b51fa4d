"""The ``amqptasks`` command line: thin wrappers around the public API."""

from __future__ import annotations

import sys

import click

from amqptasks import __version__
from amqptasks.cli._options import app_option, broker_option
from amqptasks.cli.beat import beat
from amqptasks.cli.call import call
from amqptasks.cli.control import control
from amqptasks.cli.dev_node import dev_node
from amqptasks.cli.dlq import delays, dlq
from amqptasks.cli.events import events
from amqptasks.cli.inspect import inspect
from amqptasks.cli.keys import keys
from amqptasks.cli.multi import multi
from amqptasks.cli.outbox import outbox
from amqptasks.cli.result import result
from amqptasks.cli.status import purge, status
from amqptasks.cli.topology import topology
from amqptasks.cli.worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="amqptasks")
@app_option
@broker_option
def cli(app_path: str | None, broker_url: str | None) -> None:
    """amqptasks: RabbitMQ-first background tasks.

    -A/--app and -b/--broker-url may be given before the command, as with Celery
    (amqptasks -A proj:app worker), or after it.
    """


cli.add_command(worker)
cli.add_command(call)
cli.add_command(topology)
cli.add_command(dlq)
cli.add_command(delays)
cli.add_command(beat)
cli.add_command(dev_node)
cli.add_command(outbox)
cli.add_command(inspect)
cli.add_command(control)
cli.add_command(events)
cli.add_command(status)
cli.add_command(purge)
cli.add_command(multi)
cli.add_command(keys)
cli.add_command(result)


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli(standalone_mode=True))
