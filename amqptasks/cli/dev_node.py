"""``amqptasks dev-node start|stop|url|status``: a private RabbitMQ node for development.

A thin command over :class:`amqptasks.testing.RabbitNode` and the ``rabbitmq-node``
script shipped in the package, so it works from any directory once amqptasks is
installed. The node keeps everything (config, data, logs, ``node.env``) under one
directory, listens on 127.0.0.1 only, on free ports, and leaves any other RabbitMQ on
the machine alone.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import click

from amqptasks.testing._script import find_script, parse_env_file
from amqptasks.testing.node import RabbitNode

#: Environment variable naming the node's directory.
DIR_ENV_VAR = "AMQPTASKS_DEV_NODE_DIR"


def default_dir() -> Path:
    """``$XDG_CACHE_HOME/amqptasks/dev-node`` (``~/.cache/amqptasks/dev-node``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "amqptasks" / "dev-node"


_dir_option = click.option(
    "--dir",
    "node_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=DIR_ENV_VAR,
    default=None,
    help=f"The node's directory (env {DIR_ENV_VAR}; default ~/.cache/amqptasks/dev-node).",
)


def _resolve(node_dir: Path | None) -> Path:
    return (node_dir or default_dir()).expanduser().resolve()


def _running(node_dir: Path) -> bool:
    """Whether the node in ``node_dir`` runs (the script's ``status`` exits 0)."""
    if not (node_dir / "node.env").is_file():
        return False
    proc = subprocess.run(
        ["bash", str(find_script()), "status", "--dir", str(node_dir)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode == 0


def _url(node_dir: Path) -> str:
    return parse_env_file(node_dir / "node.env")["AMQP_URL"]


@click.group("dev-node")
def dev_node() -> None:
    """A private RabbitMQ node for development: start, stop, print its URL.

    \b
    export AMQPTASKS_BROKER_URL=$(amqptasks dev-node start)
    amqptasks dev-node stop

    rabbitmq-server must be installed (apt-get install rabbitmq-server); when it
    is missing and you are root, start installs it with apt-get.
    """


@dev_node.command()
@_dir_option
def start(node_dir: Path | None) -> None:
    """Start the node (or find it running) and print its AMQP URL on stdout."""
    where = _resolve(node_dir)
    if _running(where):
        click.echo(f"dev-node: already running in {where}", err=True)
        click.echo(_url(where))
        return
    click.echo(f"dev-node: starting a private RabbitMQ node in {where} ...", err=True)
    try:
        node = RabbitNode(where).start()
    except (RuntimeError, FileNotFoundError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise click.ClickException(
            f"{first} (logs under {where / 'log'}; is rabbitmq-server installed?)"
        ) from exc
    click.echo(f"dev-node: ready; management UI at {node.mgmt_url}", err=True)
    click.echo(node.amqp_url)


@dev_node.command()
@_dir_option
def stop(node_dir: Path | None) -> None:
    """Stop the node; its directory (data, ports) is kept for the next start."""
    where = _resolve(node_dir)
    if not (where / "node.env").is_file():
        click.echo(f"dev-node: no node in {where}; nothing to stop", err=True)
        return
    try:
        RabbitNode(where).stop()
    except RuntimeError as exc:
        raise click.ClickException(str(exc).strip().splitlines()[0]) from exc
    click.echo(f"dev-node: stopped ({where})", err=True)


@dev_node.command()
@_dir_option
def url(node_dir: Path | None) -> None:
    """Print the node's AMQP URL (exit 1 when it is not running)."""
    where = _resolve(node_dir)
    if not _running(where):
        raise click.ClickException(
            f"no dev node running in {where}: start one with `amqptasks dev-node start`"
        )
    click.echo(_url(where))


@dev_node.command()
@_dir_option
def status(node_dir: Path | None) -> None:
    """Say whether the node runs (exit 0) or not (exit 3)."""
    where = _resolve(node_dir)
    if _running(where):
        click.echo(f"running: {_url(where)} ({where})")
        return
    click.echo(f"not running ({where})")
    raise SystemExit(3)
