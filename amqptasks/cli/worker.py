"""``amqptasks worker``: consume queues and run tasks."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from amqptasks import __version__
from amqptasks.cli._options import shared_options
from amqptasks.config import WORKER_POOLS
from amqptasks.exceptions import ConfigError
from amqptasks.logging import configure_logging, configured
from amqptasks.worker import EXIT_COLD, Worker
from amqptasks.worker.queues import select_queues, split_names
from amqptasks.worker.timelimits import TimeLimits

if TYPE_CHECKING:
    from amqptasks.app import App
    from amqptasks.task import Task


def _task_line(task: Task[Any, Any]) -> str:
    extra = [
        f"{label} {value}"
        for label, value in (
            ("time_limit", task.time_limit),
            ("soft_time_limit", task.soft_time_limit),
            ("rate_limit", task.rate_limit),
        )
        if value is not None
    ]
    return f"  . {task.name}" + (f"  [{', '.join(extra)}]" if extra else "")


def _banner(worker: Worker) -> str:
    app = worker.app
    tasks = "\n".join(_task_line(app.tasks.get(name)) for name in app.tasks) or "  (none)"
    return (
        f"amqptasks {__version__} worker {worker.hostname}\n"
        f"  app:         {app.main}\n"
        f"  broker:      {app.settings.broker.redacted()}\n"
        f"  queues:      {', '.join(worker.queues)}\n"
        f"  pool:        {worker.execution_pool.describe()}, concurrency {worker.concurrency}, "
        f"prefetch {worker.prefetch_count} (all queues together)\n"
        f"  time limits: {TimeLimits(*worker.time_limits).describe()}\n"
        f"[tasks]\n{tasks}\n"
    )


def _queues(app: App, queues: str | None, exclude: str | None) -> list[str] | None:
    try:
        return select_queues(app, split_names(queues), split_names(exclude))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


def log_to_file(path: Path) -> None:
    """Send the log (at the level and format already chosen) to ``path``, appending."""
    level, log_format = configured() or ("WARNING", "console")
    try:
        stream = path.open("a", buffering=1, encoding="utf-8")  # line-buffered
    except OSError as exc:
        raise click.BadParameter(f"cannot open {path}: {exc}", param_hint="--logfile") from exc
    configure_logging(level, log_format, stream=stream)


@click.command()
@shared_options
@click.option(
    "-Q",
    "--queues",
    default=None,
    help="Comma-separated queues to consume (default: the app's default queue).",
)
@click.option(
    "-X",
    "--exclude-queues",
    default=None,
    help="Comma-separated queues not to consume: the app's known queues (or -Q's) minus these.",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Tasks running at once (threads: 2xCPUs; processes: CPUs; asyncio: 100; solo: 1) "
    "(env AMQPTASKS_WORKER_CONCURRENCY).",
)
@click.option(
    "-P",
    "--pool",
    type=click.Choice(list(WORKER_POOLS)),
    default=None,
    help="Where plain-function tasks run; async def tasks always run on the event loop "
    "(env AMQPTASKS_WORKER_POOL, default threads).",
)
@click.option(
    "-n", "--hostname", default=None, help="Node name, e.g. name@%h; %h expands to the host."
)
@click.option(
    "--prefetch-multiplier",
    type=click.IntRange(min=1),
    default=None,
    help="Unacked deliveries per worker = concurrency x this, shared by its queues; 1 = fair "
    "dispatch (env AMQPTASKS_WORKER_PREFETCH_MULTIPLIER, default 4).",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds a warm shutdown waits for running tasks "
    "(env AMQPTASKS_WORKER_SHUTDOWN_TIMEOUT, default 30).",
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(min=1),
    default=None,
    help="processes pool: replace a child after this many tasks "
    "(env AMQPTASKS_WORKER_MAX_TASKS_PER_CHILD).",
)
@click.option(
    "--max-memory-per-child",
    type=click.IntRange(min=1),
    default=None,
    help="processes pool: replace a child whose resident memory passed this many KiB, "
    "after its task (env AMQPTASKS_WORKER_MAX_MEMORY_PER_CHILD).",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Hard time limit of each task, in seconds, unless the task or call sets one "
    "(env AMQPTASKS_TASK_TIME_LIMIT).",
)
@click.option(
    "--soft-time-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Soft time limit of each task, in seconds, unless the task or call sets one "
    "(env AMQPTASKS_TASK_SOFT_TIME_LIMIT).",
)
@click.option(
    "--logfile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append the log to this file instead of stderr.",
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
    exclude_queues: str | None,
    concurrency: int | None,
    pool: str | None,
    hostname: str | None,
    prefetch_multiplier: int | None,
    shutdown_timeout: float | None,
    max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
    time_limit: float | None,
    soft_time_limit: float | None,
    logfile: Path | None,
    pidfile: Path | None,
) -> None:
    """Consume QUEUES and run their tasks until SIGTERM (warm) or a second signal (cold).

    Exit codes: 0 after a warm shutdown, 1 on an error (bad URL, broker down,
    topology mismatch), 2 on a usage error, 3 after a cold shutdown that left
    tasks unfinished (their messages go back to the queue).
    """
    runner = Worker(
        app,
        queues=_queues(app, queues, exclude_queues),
        concurrency=concurrency,
        pool=pool,
        hostname=hostname,
        prefetch_multiplier=prefetch_multiplier,
        shutdown_timeout=shutdown_timeout,
        # Children of the processes pool import the app as -A names it.
        app_path=click.get_current_context().params.get("app_path"),
        max_tasks_per_child=max_tasks_per_child,
        max_memory_per_child=max_memory_per_child,
        time_limit=time_limit,
        soft_time_limit=soft_time_limit,
    )
    if logfile is not None:
        log_to_file(logfile)
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
        # Threads still running a task cannot be stopped (pool processes were killed and
        # reaped); leave without joining them.
        os._exit(code)
    sys.exit(code)
