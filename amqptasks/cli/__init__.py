"""The ``amqptasks`` command line: thin wrappers around the public API."""

from __future__ import annotations

import sys

import click

from amqptasks import __version__
from amqptasks.cli.beat import beat
from amqptasks.cli.call import call
from amqptasks.cli.control import control
from amqptasks.cli.dlq import delays, dlq
from amqptasks.cli.events import events
from amqptasks.cli.inspect import inspect
from amqptasks.cli.status import purge, status
from amqptasks.cli.topology import topology
from amqptasks.cli.worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="amqptasks")
def cli() -> None:
    """amqptasks: RabbitMQ-first background tasks."""


cli.add_command(worker)
cli.add_command(call)
cli.add_command(topology)
cli.add_command(dlq)
cli.add_command(delays)
cli.add_command(beat)
cli.add_command(inspect)
cli.add_command(control)
cli.add_command(events)
cli.add_command(status)
cli.add_command(purge)


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli(standalone_mode=True))
