"""``amqptasks worker``: consume queues and run tasks."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from amqptasks import __version__, signals
from amqptasks.beat.extension import BeatExtension
from amqptasks.cli._options import setting_help, shared_options
from amqptasks.config import WORKER_POOLS
from amqptasks.control import attach as attach_fleet
from amqptasks.control.metrics import serve_metrics
from amqptasks.exceptions import ConfigError
from amqptasks.logging import configure_logging, configured, get_logger
from amqptasks.worker import EXIT_COLD, Worker
from amqptasks.worker.queues import select_queues, split_names
from amqptasks.worker.supervisor import (
    ChildLaunch,
    Supervisor,
    child_hostname,
    notify_ready,
    wait_for_go,
)

if TYPE_CHECKING:
    from amqptasks.app import App
    from amqptasks.task import Task

log = get_logger(__name__)

#: Seconds between two checks, in a supervised worker process, that its supervisor lives.
ORPHAN_CHECK_INTERVAL = 1.0
#: Options of the supervisor that its worker processes do not get as they are: the
#: node name (given per process), the pidfile (the supervisor's), the broker URL
#: (inherited through AMQPTASKS_BROKER_URL, kept out of ``ps``) and the process count.
_SUPERVISOR_ONLY = frozenset({"workers", "supervised", "hostname", "pidfile", "broker_url"})


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
        f"  pool:        {worker.pool.describe()}, concurrency {worker.concurrency}, "
        f"prefetch {worker.prefetch_count} (all queues together)\n"
        f"  time limits: {worker.options.time_limits.describe()}\n"
        f"[tasks]\n{tasks}\n"
    )


def _short_banner(worker: Worker, index: int) -> str:
    """What worker processes after the first print: the first one printed the rest."""
    return (
        f"amqptasks {__version__} worker {worker.hostname} "
        f"(worker process {index}, pid {os.getpid()}; settings as in process 1's banner)"
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


def child_options(ctx: click.Context) -> list[str]:
    """The command-line options a supervised worker process gets: the supervisor's own,
    as parsed (from the command line or the environment), minus :data:`_SUPERVISOR_ONLY`."""
    argv: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in _SUPERVISOR_ONLY:
            continue
        value = ctx.params.get(param.name or "")
        if value is None:
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            if value:
                argv.append(flag)
            elif param.secondary_opts:
                argv.append(max(param.secondary_opts, key=len))
            continue
        for item in value if param.multiple else (value,):
            argv += [flag, str(item)]
    return argv


def _supervise(
    ctx: click.Context, count: int, hostname: str | None, logfile: Path | None, pidfile: Path | None
) -> int:
    """Run ``count`` worker processes of this same command; return the exit code."""
    options = child_options(ctx)

    def command(launch: ChildLaunch) -> list[str]:
        name = child_hostname(hostname, launch.index, count)
        return [
            sys.executable,
            "-m",
            "amqptasks",
            "worker",
            *options,
            *(["--hostname", name] if name is not None else []),
            "--workers",
            "1",
            "--supervised",
            launch.encode(),
        ]

    def announce(children: list[tuple[int, int]]) -> None:
        pids = ", ".join(str(pid) for _, pid in children)
        click.echo(
            f"amqptasks {__version__} supervisor pid {os.getpid()}: "
            f"{len(children)} worker processes running, pids {pids}",
            err=True,
        )

    if logfile is not None:
        log_to_file(logfile)
    if pidfile is not None:
        pidfile.write_text(f"{os.getpid()}\n")
    try:
        return Supervisor(count, command, on_ready=announce).run()
    finally:
        if pidfile is not None:
            pidfile.unlink(missing_ok=True)


async def _run_supervised(runner: Worker, launch: ChildLaunch) -> int:
    """Run a worker process of a supervisor: report when it consumes, stop if orphaned.

    Its signals differ from a lone worker's: SIGTERM and SIGINT mean a warm shutdown
    however many arrive, SIGQUIT a cold one. The supervisor forwards a first signal as
    SIGTERM and a second as SIGQUIT, and a service manager may signal every process of
    the service too (systemd's default ``KillMode=control-group``): a SIGTERM from both
    is one request for a warm shutdown, not two.
    """
    supervisor = os.getppid()
    ready = asyncio.Event()

    def on_ready(sender: object, **_kwargs: object) -> None:
        notify_ready(launch.ready_fd)
        ready.set()

    async def stop_when_orphaned() -> None:
        await ready.wait()
        while os.getppid() == supervisor:
            await asyncio.sleep(ORPHAN_CHECK_INTERVAL)
        log.warning("the supervisor is gone; stopping", supervisor_pid=supervisor)
        runner.stop_warm()

    signals.worker_ready.connect(on_ready, sender=runner)
    watchdog = asyncio.ensure_future(stop_when_orphaned())
    try:
        return await runner.run(handle_signals=True, escalate=False)
    finally:
        watchdog.cancel()
        signals.worker_ready.disconnect(on_ready, sender=runner)


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
    help=setting_help(
        "Tasks running at once (threads: 2xCPUs; processes: CPUs; asyncio: 100; solo: 1)",
        "worker_concurrency",
    ),
)
@click.option(
    "-P",
    "--pool",
    type=click.Choice(list(WORKER_POOLS)),
    default=None,
    help=setting_help(
        "Where plain-function tasks run; async def tasks always run on the event loop",
        "worker_pool",
    ),
)
@click.option(
    "-n",
    "--hostname",
    default=None,
    help="Node name, e.g. name@%h: %h is the host, %n its first label, %d the domain, "
    "%p the pid, %i the worker process number (see --workers).",
)
@click.option(
    "--prefetch-multiplier",
    type=click.IntRange(min=1),
    default=None,
    help=setting_help(
        "Unacked deliveries per worker = concurrency x this, shared by its queues; 1 = fair "
        "dispatch",
        "worker_prefetch_multiplier",
    ),
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help=setting_help("Seconds a warm shutdown waits for running tasks", "worker_shutdown_timeout"),
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(min=1),
    default=None,
    help=setting_help(
        "processes pool: replace a child after this many tasks", "worker_max_tasks_per_child"
    ),
)
@click.option(
    "--max-memory-per-child",
    type=click.IntRange(min=1),
    default=None,
    help=setting_help(
        "processes pool: replace a child whose resident memory passed this many KiB, "
        "after its task",
        "worker_max_memory_per_child",
    ),
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=setting_help(
        "Hard time limit of each task, in seconds, unless the task or call sets one",
        "task_time_limit",
    ),
)
@click.option(
    "--soft-time-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=setting_help(
        "Soft time limit of each task, in seconds, unless the task or call sets one",
        "task_soft_time_limit",
    ),
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
    help="Write the process id here while running (with --workers: the supervisor's).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help=setting_help(
        "Worker processes, each with its own connection, event loop and pool, under a "
        "supervisor; %i in --hostname is the process number",
        "worker_processes",
    ),
)
@click.option(
    "--extension",
    "extensions",
    multiple=True,
    metavar="MODULE:ATTR",
    help="A worker extension to load (an Extension subclass or instance), after those of "
    "the worker_extensions setting; repeat for several (env AMQPTASKS_WORKER_EXTENSIONS).",
)
@click.option(
    "-B",
    "--beat",
    is_flag=True,
    default=False,
    help="Also run a beat in this worker (periodic tasks; any number of beats may run, "
    "one sends: see docs/periodic-tasks.md).",
)
@click.option(
    "-E",
    "--task-events",
    is_flag=True,
    default=False,
    help="Send Celery's task and worker events (Flower, celery events): docs/monitoring.md.",
)
@click.option(
    "--control",
    is_flag=True,
    default=False,
    help="Answer celery inspect/control and amqptasks inspect/control; follow revokes.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    help="Serve Prometheus metrics on this port (with --workers: port + process index - 1).",
)
@click.option("--supervised", default=None, hidden=True)
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
    workers: int | None,
    extensions: tuple[str, ...],
    beat: bool,
    task_events: bool,
    control: bool,
    metrics_port: int | None,
    supervised: str | None,
) -> None:
    """Consume QUEUES and run their tasks until SIGTERM (warm) or a second signal (cold).

    Exit codes: 0 after a warm shutdown, 1 on an error (bad URL, broker down,
    topology mismatch), 2 on a usage error, 3 after a cold shutdown that left
    tasks unfinished (their messages go back to the queue).

    With --workers N above 1 this process supervises N worker processes: it forwards
    signals, restarts a process that dies, and exits with the worst of their codes.
    """
    ctx = click.get_current_context()
    launch: ChildLaunch | None = None
    if supervised is not None:
        try:
            launch = ChildLaunch.parse(supervised)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--supervised") from exc
    count = workers if workers is not None else app.settings.worker_processes
    if launch is None and count == 1:
        # %i is the process number: 1 for a worker on its own (a supervisor gives each
        # of its processes a name of its own).
        hostname = child_hostname(hostname, 1, 1)
    # Built by the supervisor too: every option is checked before a process starts.
    runner = Worker(
        app,
        queues=_queues(app, queues, exclude_queues),
        concurrency=concurrency,
        pool=pool,
        hostname=hostname,
        prefetch_multiplier=prefetch_multiplier,
        shutdown_timeout=shutdown_timeout,
        # Children of the processes pool import the app as -A names it.
        app_path=ctx.params.get("app_path"),
        max_tasks_per_child=max_tasks_per_child,
        max_memory_per_child=max_memory_per_child,
        time_limit=time_limit,
        soft_time_limit=soft_time_limit,
        extensions=(*extensions, *([BeatExtension()] if beat else [])),
    )
    attach_fleet(
        runner,
        events=task_events or app.settings.worker_send_task_events,
        control=control or app.settings.worker_enable_remote_control,
    )
    if metrics_port is not None and not (launch is None and count > 1):
        serve_metrics(runner, metrics_port + (launch.index - 1 if launch is not None else 0))
    if launch is None and count > 1:
        sys.exit(_supervise(ctx, count, hostname, logfile, pidfile))
    if logfile is not None:
        log_to_file(logfile)
    if launch is not None and launch.go_fd is not None and not wait_for_go(launch.go_fd):
        sys.exit(0)  # the supervisor stops before this process connected
    if launch is None or launch.index == 1:
        click.echo(_banner(runner), err=True)
    else:
        click.echo(_short_banner(runner, launch.index), err=True)
    if pidfile is not None and launch is None:
        pidfile.write_text(f"{os.getpid()}\n")
    try:
        if launch is None:
            code = asyncio.run(runner.run(handle_signals=True))
        else:
            code = asyncio.run(_run_supervised(runner, launch))
    finally:
        if pidfile is not None and launch is None:
            pidfile.unlink(missing_ok=True)
    sys.stderr.flush()
    if code == EXIT_COLD:
        # Threads still running a task cannot be stopped (pool processes were killed and
        # reaped); leave without joining them.
        os._exit(code)
    sys.exit(code)
