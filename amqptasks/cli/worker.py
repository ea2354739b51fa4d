"""``amqptasks worker``: consume queues and run tasks."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from amqptasks import __version__
from amqptasks.cli._options import shared_options
from amqptasks.worker import EXIT_COLD, Worker

if TYPE_CHECKING:
    from amqptasks.app import App


def _banner(worker: Worker) -> str:
    app = worker.app
    tasks = "\n".join(f"  . {name}" for name in app.tasks) or "  (none)"
    return (
        f"amqptasks {__version__} worker {worker.hostname}\n"
        f"  app:         {app.main}\n"
        f"  broker:      {app.settings.broker.redacted()}\n"
        f"  queues:      {', '.join(worker.queues)}\n"
        f"  pool:        {worker.pool}, concurrency {worker.concurrency}, "
        f"prefetch {worker.prefetch_count}\n"
        f"[tasks]\n{tasks}\n"
    )


@click.command()
@shared_options
@click.option(
    "-Q",
    "--queues",
    default=None,
    help="Comma-separated queues to consume (default: the app's default queue).",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Tasks running at once (threads: 2xCPUs; asyncio: 100).",
)
@click.option(
    "-P",
    "--pool",
    type=click.Choice(["threads", "asyncio"]),
    default=None,
    help="Where sync tasks run; async def tasks always run on the event loop.",
)
@click.option("-n", "--hostname", default=None, help="Node name; %h expands to the host.")
@click.option(
    "--prefetch-multiplier",
    type=click.IntRange(min=1),
    default=None,
    help="Unacked deliveries per queue = concurrency x this (default 4).",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds a warm shutdown waits for running tasks (default 30).",
)
@click.option(
    "--pidfile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the process id here while running.",
)
def worker(
    app: App,
    queues: str | None,
    concurrency: int | None,
    pool: str | None,
    hostname: str | None,
    prefetch_multiplier: int | None,
    shutdown_timeout: float | None,
    pidfile: Path | None,
) -> None:
    """Consume QUEUES and run their tasks until SIGTERM (warm) or a second signal (cold).

    Exit codes: 0 after a warm shutdown, 1 on an error (bad URL, broker down,
    topology mismatch), 2 on a usage error, 3 after a cold shutdown that left
    tasks unfinished (their messages go back to the queue).
    """
    runner = Worker(
        app,
        queues=[q.strip() for q in queues.split(",") if q.strip()] if queues else None,
        concurrency=concurrency,
        pool=pool,
        hostname=hostname,
        prefetch_multiplier=prefetch_multiplier,
        shutdown_timeout=shutdown_timeout,
    )
    click.echo(_banner(runner), err=True)
    if pidfile is not None:
        pidfile.write_text(f"{os.getpid()}\n")
    try:
        code = asyncio.run(runner.run(handle_signals=True))
    finally:
        if pidfile is not None:
            pidfile.unlink(missing_ok=True)
    sys.stderr.flush()
    if code == EXIT_COLD:
        # Threads still running a task cannot be stopped; leave without joining them.
        os._exit(code)
    sys.exit(code)
