"""Declare, verify or leave alone: the steps, and the mismatch report (pure).

:func:`declaration_steps` is a generator that yields one :class:`Step` at a
time and receives the broker's answer (``None`` or the :class:`ChannelError`);
the sync (pika) and async (aio-pika) transports only execute steps. When a
queue or exchange exists with other arguments, RabbitMQ closes the channel
with 406 PRECONDITION_FAILED; the transports then open a fresh channel and the
flow goes on, so one mismatch does not hide the others and never kills the
connection. At the end every mismatch is raised at once as a
:class:`TopologyMismatch` naming each object, each differing argument with its
live and wanted value, and the ways out.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from amqptasks.exceptions import ChannelError, ConfigError, NotFound, TopologyMismatch
from amqptasks.topology.model import (
    DECLARE_MODES,
    BindingDeclaration,
    Declarations,
    Exchange,
    ExchangeBindingDeclaration,
    QueueDeclaration,
)

StepKind = Literal["exchange", "queue", "bind", "xbind", "live"]


@dataclass(frozen=True)
class Step:
    """One broker operation.

    ``live`` steps ask the transport for the live definition of a queue or
    exchange (through the management API; ``None`` when unavailable).
    """

    kind: StepKind
    target: (
        Exchange
        | QueueDeclaration
        | BindingDeclaration
        | ExchangeBindingDeclaration
        | tuple[str, str]
    )
    passive: bool = False


_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)' for (?P<kind>queue|exchange) '(?P<name>[^']*)'.*?"
    r"received (?:the value '(?P<received>[^']*)'|none).*?but current is "
    r"(?:the value '(?P<current>[^']*)'|none)"
)

_ABSENT = "(absent)"


def _show(value: Any) -> str:
    return _ABSENT if value is None else repr(value)


#: Arguments a broker fills in with its default when a declaration leaves them out:
#: RabbitMQ 4.x reports ``x-queue-type: classic`` on every classic queue, 3.x does not.
BROKER_DEFAULTS: Mapping[str, Any] = {"x-queue-type": "classic"}


def argument_differences(
    wanted: Mapping[str, Any],
    live: Mapping[str, Any],
) -> list[tuple[str, Any, Any]]:
    """``(argument, live value, wanted value)`` for every argument that differs.

    An argument left out on one side and holding the broker's default
    (:data:`BROKER_DEFAULTS`) on the other is the same queue, not a difference.
    """
    keys = sorted(set(wanted) | set(live))
    return [
        (key, live.get(key), wanted.get(key))
        for key in keys
        if live.get(key, BROKER_DEFAULTS.get(key)) != wanted.get(key, BROKER_DEFAULTS.get(key))
    ]


def differences_from_text(reply_text: str) -> list[tuple[str, Any, Any]]:
    """``(argument, live, wanted)`` parsed from a 406 "inequivalent arg" text."""
    match = _INEQUIVALENT.search(reply_text)
    if match is None:
        return []
    return [(match["arg"], match["current"], match["received"])]


def mismatch_report(
    kind: str, name: str, wanted: Mapping[str, Any], live: Mapping[str, Any] | None, reply_text: str
) -> str:
    """One object's mismatch: each differing argument and the ways out."""
    if live is not None:
        differences = argument_differences(wanted, live)
    else:
        differences = differences_from_text(reply_text)
    lines = [f"{kind} {name!r} exists with other arguments than the app declares:"]
    if differences:
        for argument, live_value, wanted_value in differences:
            lines.append(f"  {argument}: live {_show(live_value)}, wanted {_show(wanted_value)}")
    else:
        lines.append(f"  broker said: {reply_text}")
    if live is None:
        lines.append("  (only the first difference is known; set management_url to see all)")
    lines.append(
        f"  ways out: declare the {kind} in the app exactly as it exists "
        f"(live arguments: {dict(live) if live is not None else 'see above'}; for a queue, "
        f"Queue(..., dead_letter=False) drops the dead-letter arguments amqptasks adds); or set "
        f"declare='passive' for it to use it as the operator made it; or delete it "
        f"({_delete_command(kind, name)}) so that it is declared again"
        + (" - its messages are lost" if kind == "queue" else "")
    )
    return "\n".join(lines)


def _delete_command(kind: str, name: str) -> str:
    if kind == "queue":
        return f"rabbitmqctl delete_queue {name}"
    # rabbitmqctl cannot delete exchanges; the management plugin's tools can.
    return f"rabbitmqadmin delete exchange name={name}, or the management UI"


def _wanted_arguments(target: Any) -> Mapping[str, Any]:
    arguments: Mapping[str, Any] = getattr(target, "arguments", {})
    return arguments


def declaration_steps(
    declarations: Declarations,
    mode: str,
) -> Generator[Step, Any, None]:
    """Yield the steps for ``declarations`` in ``mode``; raise what went wrong.

    The caller sends back, for each step, ``None`` (done) or the
    :class:`ChannelError` the broker answered, and for ``live`` steps the live
    definition (a mapping with ``arguments``) or ``None``.

    Raises:
        TopologyMismatch: every object that exists with other arguments.
        NotFound: in passive mode, the objects that do not exist.
        ChannelError: any other refusal (e.g. 403 access refused).
    """
    if mode not in DECLARE_MODES:
        raise ConfigError(f"declare mode must be one of {', '.join(DECLARE_MODES)}, got {mode!r}")
    if mode == "off":
        return
    passive = mode == "passive"
    mismatches: list[str] = []
    missing: list[str] = []
    steps: list[Step] = [Step("exchange", e, passive) for e in declarations.exchanges]
    steps += [Step("queue", q, passive) for q in declarations.queues]
    if not passive:
        steps += [Step("xbind", b) for b in declarations.exchange_bindings]
        steps += [Step("bind", b) for b in declarations.bindings]
    for step in steps:
        error = yield step
        if error is None:
            continue
        if not isinstance(error, ChannelError):
            raise error
        target = step.target
        name = getattr(target, "name", "")
        if isinstance(error, TopologyMismatch) or error.reply_code == 406:
            live = yield Step("live", (step.kind, name))
            live_arguments = live.get("arguments", {}) if isinstance(live, Mapping) else None
            mismatches.append(
                mismatch_report(
                    step.kind, name, _wanted_arguments(target), live_arguments, error.reply_text
                )
            )
        elif isinstance(error, NotFound) and passive:
            missing.append(f"{step.kind} {name!r}")
        else:
            raise error
    if missing:
        raise NotFound(
            f"passive mode: missing on the broker: {', '.join(missing)}; ask the "
            f"operator to create it, or run `amqptasks topology apply` with a user allowed to",
            reply_code=404,
            reply_text="NOT_FOUND",
        )
    if mismatches:
        raise TopologyMismatch(
            "\n".join(mismatches), reply_code=406, reply_text="PRECONDITION_FAILED"
        )
