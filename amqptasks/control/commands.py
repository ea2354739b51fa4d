"""The remote-control commands a worker answers, with Celery's names, arguments and answers.

Each handler takes the worker's :class:`~amqptasks.control.fleet.Fleet` and the
command's arguments and returns what goes back to the client (``{"ok": ...}``
or ``{"error": ...}`` for control commands, data for inspect commands), as
``celery.worker.control`` does, so ``celery inspect`` / ``celery control`` and
Flower print it the same for both kinds of worker.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from amqptasks import __version__
from amqptasks.exceptions import ConfigError
from amqptasks.policies.limits import parse_rate_limit

if TYPE_CHECKING:
    from amqptasks.app import App
    from amqptasks.control.book import TaskBook
    from amqptasks.control.events import EventClock
    from amqptasks.control.revokes import RevokeLog
    from amqptasks.worker.options import WorkerOptions


class Fleet(Protocol):
    """What commands use of the worker's :class:`~amqptasks.control.fleet.Fleet`."""

    book: TaskBook
    clock: EventClock
    revokes: RevokeLog

    @property
    def app(self) -> App: ...
    @property
    def options(self) -> WorkerOptions: ...
    @property
    def hostname(self) -> str: ...
    def consumed_queues(self) -> list[str]: ...
    def forget_rate(self, task_name: str) -> None: ...
    async def revoke(self, task_ids: list[str], *, terminate: bool = False) -> None: ...
    async def add_consumer(self, queue: str) -> str | None: ...
    async def cancel_consumer(self, queue: str) -> str | None: ...
    def shutdown(self, reason: str) -> None: ...
    def terminate(
        self, task_ids: list[str], signal: str | int | None
    ) -> tuple[list[str], list[str]]: ...
    async def heartbeat(self, type_: str) -> None: ...
    async def enable_events(self) -> None: ...
    def disable_events(self) -> None: ...


Handler = Callable[..., Awaitable[Any]]
COMMANDS: dict[str, Handler] = {}


def command(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler under its name and aliases."""

    def register(handler: Handler) -> Handler:
        for name in (handler.__name__.removeprefix("cmd_"), *names):
            COMMANDS[name] = handler
        return handler

    return register


def ok(value: Any) -> dict[str, Any]:
    """A control command's success answer."""
    return {"ok": value}


def nok(value: Any) -> dict[str, Any]:
    """A control command's refusal."""
    return {"error": value}


# -- inspect -----------------------------------------------------------------------------------


@command()
async def cmd_ping(fleet: Fleet, **_: Any) -> Any:
    return ok("pong")


@command("dump_active")
async def cmd_active(fleet: Fleet, **_: Any) -> Any:
    return [entry.info(fleet.hostname) for entry in fleet.book.active()]


@command("dump_reserved")
async def cmd_reserved(fleet: Fleet, **_: Any) -> Any:
    return [entry.info(fleet.hostname) for entry in fleet.book.reserved()]


@command("dump_schedule")
async def cmd_scheduled(fleet: Fleet, **_: Any) -> Any:
    # ETAs wait in the broker's delay levels, never in a worker.
    return []


@command("dump_revoked")
async def cmd_revoked(fleet: Fleet, **_: Any) -> Any:
    return fleet.revokes.ids()


@command("dump_tasks")
async def cmd_registered(fleet: Fleet, taskinfoitems: list[str] | None = None, **_: Any) -> Any:
    tasks = fleet.app.tasks
    names = sorted(name for name in tasks if not name.startswith("celery."))
    if not taskinfoitems:
        return names
    lines = []
    for name in names:
        task = tasks.get(name)
        attrs = [f"{a}={getattr(task, a)}" for a in taskinfoitems if getattr(task, a, None)]
        lines.append(f"{name} [{' '.join(attrs)}]" if attrs else name)
    return lines


@command()
async def cmd_stats(fleet: Fleet, **_: Any) -> Any:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    options = fleet.options
    url = fleet.app.settings.broker
    return {
        "total": dict(fleet.book.processed),
        "pid": os.getpid(),
        "clock": str(fleet.clock.value),
        "uptime": int(fleet.book.uptime()),
        "pool": {
            "implementation": f"amqptasks:{options.pool_name}",
            "max-concurrency": options.concurrency,
            "processes": [os.getpid()],
            "max-tasks-per-child": options.max_tasks_per_child or "N/A",
            "put-guarded-by-semaphore": False,
            "timeouts": [options.time_limits.soft or 0, options.time_limits.hard or 0],
        },
        "broker": {
            "hostname": url.host,
            "port": url.port,
            "virtual_host": url.vhost,
            "transport": "amqp",
            "userid": url.username,
            "ssl": url.ssl,
            "heartbeat": url.heartbeat,
            "connect_timeout": url.connect_timeout,
            "insist": False,
            "login_method": url.login_method,
            "uri_prefix": None,
            "transport_options": {},
            "failover_strategy": "round-robin",
            "alternates": [],
        },
        "prefetch_count": options.prefetch_count,
        "rusage": {
            "utime": usage.ru_utime,
            "stime": usage.ru_stime,
            "maxrss": usage.ru_maxrss,
            "minflt": usage.ru_minflt,
            "majflt": usage.ru_majflt,
            "nvcsw": usage.ru_nvcsw,
            "nivcsw": usage.ru_nivcsw,
        },
        "sw_ident": "py-amqptasks",
        "sw_ver": __version__,
    }


@command()
async def cmd_active_queues(fleet: Fleet, **_: Any) -> Any:
    answers: list[dict[str, Any]] = []
    for name in fleet.consumed_queues():
        queue = fleet.app.router.queue(name)
        exchange = queue.exchange
        exchange_name = getattr(exchange, "name", exchange) or ""
        answers.append(
            {
                "name": name,
                "exchange": {
                    "name": exchange_name,
                    "type": getattr(exchange, "type", "direct"),
                    "durable": getattr(exchange, "durable", True),
                    "auto_delete": False,
                    "delivery_mode": None,
                    "arguments": None,
                    "passive": False,
                    "no_declare": False,
                },
                "routing_key": queue.routing_key or name,
                "queue_arguments": None,
                "binding_arguments": None,
                "consumer_arguments": None,
                "durable": queue.durable,
                "exclusive": False,
                "auto_delete": False,
                "no_ack": False,
                "alias": None,
                "bindings": [],
                "no_declare": None,
                "expires": queue.expires,
                "message_ttl": queue.message_ttl,
                "max_length": queue.max_length,
                "max_length_bytes": None,
                "max_priority": queue.max_priority,
            }
        )
    return answers


@command()
async def cmd_query_task(fleet: Fleet, ids: list[str] | str | None = None, **_: Any) -> Any:
    wanted = {ids} if isinstance(ids, str) else set(ids or ())
    found = {}
    for task_id in wanted:
        entry = fleet.book.get(task_id)
        if entry is not None:
            kind = "active" if entry.started is not None else "reserved"
            found[task_id] = [kind, entry.info(fleet.hostname)]
    return found


@command()
async def cmd_conf(fleet: Fleet, with_defaults: bool = False, **_: Any) -> Any:
    values = fleet.app.settings
    settings = {f.name: getattr(values, f.name) for f in dataclasses.fields(values)}
    hidden = ("broker", "password", "secret", "key", "url")
    return {
        key: (value if isinstance(value, str | int | float | bool | type(None)) else repr(value))
        for key, value in settings.items()
        if not any(word in key.lower() for word in hidden)
    }


@command()
async def cmd_clock(fleet: Fleet, **_: Any) -> Any:
    return {"clock": fleet.clock.value}


@command()
async def cmd_report(fleet: Fleet, **_: Any) -> Any:
    return ok(f"amqptasks {__version__} worker {fleet.hostname}")


# -- control -----------------------------------------------------------------------------------


@command()
async def cmd_rate_limit(
    fleet: Fleet, task_name: str = "", rate_limit: str | float | None = None, **_: Any
) -> Any:
    try:
        rate = parse_rate_limit(rate_limit)
    except (ConfigError, ValueError) as exc:
        return nok(f"Invalid rate limit string: {exc}")
    if task_name not in fleet.app.tasks:
        return nok("unknown task")
    fleet.app.tasks.get(task_name).rate_limit = rate_limit if rate else None
    fleet.forget_rate(task_name)
    if not rate:
        return ok("rate limit disabled successfully")
    return ok("new rate limit set successfully")


@command()
async def cmd_time_limit(
    fleet: Fleet,
    task_name: str | None = None,
    hard: float | None = None,
    soft: float | None = None,
    **_: Any,
) -> Any:
    if task_name is None or task_name not in fleet.app.tasks:
        return nok("unknown task")
    task = fleet.app.tasks.get(task_name)
    task.time_limit = hard
    task.soft_time_limit = soft
    return ok("time limits set successfully")


@command()
async def cmd_revoke(
    fleet: Fleet,
    task_id: str | list[str] = "",
    terminate: bool = False,
    signal: str | None = None,
    **_: Any,
) -> Any:
    ids = [task_id] if isinstance(task_id, str) else list(task_id)
    await fleet.revoke(ids, terminate=terminate)
    if not terminate:
        return ok(f"tasks {', '.join(ids)} flagged as revoked")
    stopped, left = fleet.terminate(ids, signal)
    if left:
        return ok(
            f"terminate: {', '.join(stopped) or 'none'}; the {fleet.options.pool_name} pool "
            f"cannot stop running calls: {', '.join(left)}"
        )
    return ok(f"terminate: {', '.join(stopped)}" if stopped else "terminate: tasks unknown")


@command()
async def cmd_add_consumer(fleet: Fleet, queue: str = "", **_: Any) -> Any:
    error = await fleet.add_consumer(queue)
    return nok(error) if error else ok(f"add consumer {queue}")


@command()
async def cmd_cancel_consumer(fleet: Fleet, queue: str = "", **_: Any) -> Any:
    error = await fleet.cancel_consumer(queue)
    return nok(error) if error else ok(f"no longer consuming from {queue}")


@command()
async def cmd_shutdown(fleet: Fleet, msg: str = "Got shutdown from remote", **_: Any) -> Any:
    fleet.shutdown(msg)
    return ok("shutting down")


@command()
async def cmd_heartbeat(fleet: Fleet, **_: Any) -> Any:
    await fleet.heartbeat("worker-heartbeat")
    return None


@command()
async def cmd_enable_events(fleet: Fleet, **_: Any) -> Any:
    await fleet.enable_events()
    return ok("task events enabled")


@command()
async def cmd_disable_events(fleet: Fleet, **_: Any) -> Any:
    fleet.disable_events()
    return ok("task events disabled")


@command()
async def cmd_hello(fleet: Fleet, from_node: str = "", revoked: Any = None, **_: Any) -> Any:
    # Celery's mingle at worker start-up: tell the newcomer what is revoked.
    if from_node == fleet.hostname:
        return None
    return {"revoked": dict.fromkeys(fleet.revokes.ids(), time.time()), "clock": fleet.clock.value}
