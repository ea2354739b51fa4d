"""``amqptasks multi``: named, detached workers with pid and log files (Celery multi's verbs)."""

from __future__ import annotations

import os
import shlex

import click

from amqptasks.multi import Cluster, MultiUsageError, parse_nodes

VERBS = ("start", "stop", "stopwait", "restart", "kill", "show")
_BROKER_FLAGS = ("-b", "--broker-url")


def _take_broker_url(options: list[str]) -> tuple[list[str], str | None]:
    """``options`` without -b/--broker-url, and its value: workers get it from the
    environment, so it stays out of ``ps`` and of ``show``."""
    kept: list[str] = []
    url: str | None = None
    position = 0
    while position < len(options):
        arg = options[position]
        if arg in _BROKER_FLAGS:
            if position + 1 >= len(options):
                raise click.UsageError(f"option {arg} needs a value")
            url = options[position + 1]
            position += 2
            continue
        if arg.startswith("--broker-url="):
            url = arg.partition("=")[2]
        else:
            kept.append(arg)
        position += 1
    return kept, url


@click.command(
    context_settings={"ignore_unknown_options": True, "help_option_names": ["-h", "--help"]}
)
@click.argument("verb", type=click.Choice(VERBS), metavar="start|stop|stopwait|restart|kill|show")
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="NODES... [WORKER OPTIONS]")
def multi(verb: str, args: tuple[str, ...]) -> None:
    """Start, stop or restart named workers that run detached, as celery multi does.

    \b
      amqptasks multi start w1 w2 -A proj:app -l info
      amqptasks multi stopwait w1 w2          (warm shutdown: waits for running tasks)
      amqptasks multi restart w1 w2 -A proj:app -l info
    \b
    NODES: names (w1 is w1@this-host, w1@%h too) or a count (3: w1 w2 w3). Every other
    argument is a worker option, for every node, or for one with -c:w1 4 (name or
    position: -Q:2 images). --pidfile (default %n.pid) and --logfile (default %n%I.log)
    take %n (short node name), %h (full node name), %d (host), %i (node position);
    give stop/stopwait/kill/restart the same ones as start. stop sends SIGTERM (warm
    shutdown) and returns; stopwait waits until the workers exited; restart is
    stopwait then start; kill sends SIGKILL (running tasks' messages are redelivered).
    """
    root = click.get_current_context().find_root()
    options, broker_url = _take_broker_url(list(args))
    try:
        nodes_args = options
        names_end = next((i for i, a in enumerate(options) if a.startswith("-")), len(options))
        app_path = root.params.get("app_path")
        if app_path and not any(a in ("-A", "--app") or a.startswith("--app=") for a in options):
            nodes_args = [*options[:names_end], "-A", app_path, *options[names_end:]]
        nodes = parse_nodes(nodes_args)
        if verb in ("start", "restart", "show") and not (
            os.environ.get("AMQPTASKS_APP")
            or any(a in ("-A", "--app") or a.startswith("--app=") for a in nodes_args)
        ):
            raise MultiUsageError(
                f"multi {verb} needs the app: amqptasks multi {verb} w1 w2 -A proj:app "
                "(or AMQPTASKS_APP)"
            )
    except MultiUsageError as exc:
        raise click.UsageError(str(exc)) from exc
    env = dict(os.environ)
    broker_url = broker_url or root.params.get("broker_url")
    if broker_url:
        env["AMQPTASKS_BROKER_URL"] = broker_url
    cluster = Cluster(nodes, env, click.echo)
    if verb == "show":
        for node in nodes:
            click.echo(shlex.join(node.command()))
        return
    actions = {
        "start": cluster.start,
        "stop": lambda: cluster.stop(wait=False),
        "stopwait": lambda: cluster.stop(wait=True),
        "restart": cluster.restart,
        "kill": cluster.kill,
    }
    raise SystemExit(actions[verb]())
