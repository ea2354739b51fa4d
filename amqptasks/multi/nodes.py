"""Named worker nodes of ``amqptasks multi``: names, per-node options, pid and log paths (pure).

Celery multi's conventions: ``w1`` is the node ``w1@<this host>``; a single number N
names N nodes (``w1`` ... ``wN``); ``-c:w1 4`` or ``--queues:2=images`` give one node
(by short name, full name or position) an option of its own; ``--pidfile`` and
``--logfile`` take placeholders.
"""

from __future__ import annotations

import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

#: Celery multi's defaults, in the current directory.
DEFAULT_PIDFILE = "%n.pid"
DEFAULT_LOGFILE = "%n%I.log"
#: Prefix of the nodes a count names (``multi start 3``: w1, w2, w3).
RANGE_PREFIX = "w"

#: ``-c:w1``, ``--queues:2``, ``--queues:w1=images``: an option for one node.
_NAMESPACED = re.compile(r"^(-[A-Za-z]|--[A-Za-z][\w-]*):([^=]+)(?:=(.*))?$", re.DOTALL)
_PLACEHOLDER = re.compile(r"%(.)")


class MultiUsageError(ValueError):
    """The command line names no node, or an option multi cannot pass on."""


@dataclass(frozen=True)
class Node:
    """One worker of ``amqptasks multi``.

    Attributes:
        name: Full node name, ``w1@host``.
        index: Position on the command line, from 1.
        pidfile: Where the worker writes its process id.
        logfile: Where its log (and anything it prints) goes.
        options: Worker options, the shared ones then this node's own.
    """

    name: str
    index: int
    pidfile: Path
    logfile: Path
    options: tuple[str, ...]

    @property
    def short(self) -> str:
        """The name before ``@`` (``w1``)."""
        return self.name.partition("@")[0]

    def command(self) -> list[str]:
        """The ``amqptasks worker`` command line of this node."""
        return [
            sys.executable,
            "-m",
            "amqptasks",
            "worker",
            "--hostname",
            self.name,
            "--pidfile",
            str(self.pidfile),
            "--logfile",
            str(self.logfile),
            *self.options,
        ]


def host_name(name: str, host: str | None = None) -> str:
    """``w1`` -> ``w1@host``; ``w1@%h`` -> ``w1@host`` (``%n``: its first label, ``%d``: domain)."""
    host = host or socket.gethostname()
    if "@" not in name:
        return f"{name}@{host}"
    first, _, domain = host.partition(".")
    return _substitute(name, {"h": host, "n": first, "d": domain})


def expand(template: str, node_name: str, index: int) -> str:
    """A pid or log file path for one node.

    ``%n`` is the node's short name (``w1``), ``%h`` its full name (``w1@host``),
    ``%d`` its host, ``%i`` its position on the command line (from 1), ``%I``
    nothing (Celery's pool-process suffix: the processes of one node share its
    log), ``%%`` a percent sign.
    """
    short, _, host = node_name.partition("@")
    return _substitute(
        template, {"n": short, "h": node_name, "d": host, "i": str(index), "I": "", "%": "%"}
    )


def _substitute(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _node_names(names: list[str]) -> list[str]:
    if len(names) == 1 and names[0].isdigit():
        count = int(names[0])
        if count < 1:
            raise MultiUsageError("the number of nodes must be at least 1")
        return [f"{RANGE_PREFIX}{i}" for i in range(1, count + 1)]
    return names


def split_command_line(args: list[str]) -> tuple[list[str], list[str]]:
    """The node names (the arguments before the first option) and the options after them."""
    for position, arg in enumerate(args):
        if arg.startswith("-"):
            return args[:position], args[position:]
    return list(args), []


@dataclass
class _Parsed:
    shared: list[str]
    own: dict[str, list[str]]
    pidfile: str
    logfile: str


def _take_value(options: list[str], position: int, flag: str, inline: str | None) -> str:
    if inline is not None:
        return inline
    if position + 1 >= len(options):
        raise MultiUsageError(f"option {flag} needs a value")
    return options[position + 1]


def _parse_options(options: list[str]) -> _Parsed:
    parsed = _Parsed([], {}, DEFAULT_PIDFILE, DEFAULT_LOGFILE)
    position = 0
    while position < len(options):
        arg = options[position]
        flag, eq, inline_value = arg.partition("=")
        inline = inline_value if eq and flag.startswith("--") else None
        if not arg.startswith("--"):
            flag = arg
        namespaced = _NAMESPACED.match(arg)
        if flag in ("-n", "--hostname"):
            raise MultiUsageError(
                f"name the nodes as arguments (amqptasks multi start w1 w2@%h ...), not with {flag}"
            )
        if flag in ("--pidfile", "--logfile"):
            path = _take_value(options, position, flag, inline)
            setattr(parsed, flag[2:], path)
            position += 1 if inline is not None else 2
        elif namespaced is not None:
            option, target, given = namespaced.groups()
            value: str | None = given
            if value is None:
                # Like Celery: the next argument is the value, unless it is an option.
                nxt = options[position + 1] if position + 1 < len(options) else None
                value = nxt if nxt is not None and not nxt.startswith("-") else None
                position += 1 if value is None else 2
            else:
                position += 1
            parsed.own.setdefault(target, []).extend([option] + ([value] if value else []))
        else:
            parsed.shared.append(arg)
            position += 1
    return parsed


def parse_nodes(args: list[str], *, cwd: Path | None = None, host: str | None = None) -> list[Node]:
    """The nodes ``args`` (``w1 w2 -A proj -c:w1 4 ...``) name, with their options.

    Raises:
        MultiUsageError: no node named, a node named twice, an option that names no
            node, or ``-n``/``--hostname`` (nodes are named as arguments).
    """
    names, options = split_command_line(args)
    if not names:
        raise MultiUsageError(
            "name at least one node before the options: amqptasks multi start w1 w2 -A proj"
        )
    full = [host_name(name, host) for name in _node_names(names)]
    if len(set(full)) != len(full):
        raise MultiUsageError(f"a node is named twice: {' '.join(full)}")
    parsed = _parse_options(options)
    keys = {str(i): n for i, n in enumerate(full, 1)}
    keys.update({n.partition("@")[0]: n for n in full})
    keys.update({n: n for n in full})
    own: dict[str, list[str]] = {}
    for target, extra in parsed.own.items():
        for one in target.split(","):
            if one not in keys:
                raise MultiUsageError(
                    f"option {extra[0]}:{one} names no node (nodes: {', '.join(full)})"
                )
            own.setdefault(keys[one], []).extend(extra)
    base = cwd or Path.cwd()
    return [
        Node(
            name=name,
            index=index,
            pidfile=base / expand(parsed.pidfile, name, index),
            logfile=base / expand(parsed.logfile, name, index),
            options=(*parsed.shared, *own.get(name, [])),
        )
        for index, name in enumerate(full, 1)
    ]
