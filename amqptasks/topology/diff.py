"""Compare what an app wants with what a broker has (pure).

Live definitions come from the management API (``/api/queues`` etc.) or, when
it is not available, from AMQP probes made by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from amqptasks.topology import names
from amqptasks.topology.declare import argument_differences

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from amqptasks.topology.model import Declarations

Status = Literal["ok", "missing", "different", "extra"]


@dataclass(frozen=True)
class Difference:
    """One row of ``amqptasks topology diff``."""

    kind: str
    name: str
    status: Status
    detail: str = ""


def _describe(differences: list[tuple[str, Any, Any]]) -> str:
    return "; ".join(
        f"{arg}: live {live!r}, wanted {wanted!r}" for arg, live, wanted in differences
    )


def compare(
    wanted: Declarations,
    live_queues: Mapping[str, Mapping[str, Any]] | None,
    live_exchanges: Mapping[str, Mapping[str, Any]] | None,
    live_bindings: Iterable[tuple[str, str, str]] | None,
) -> list[Difference]:
    """Rows for every wanted object, then the live ones the app does not know.

    A ``None`` live mapping means "unknown" (no management API): extras are
    not listed for it.
    """
    rows: list[Difference] = []
    for exchange in wanted.exchanges:
        live = (live_exchanges or {}).get(exchange.name)
        if live_exchanges is not None and live is None:
            rows.append(Difference("exchange", exchange.name, "missing"))
            continue
        if live is None:
            continue
        problems = argument_differences(dict(exchange.arguments), live.get("arguments") or {})
        if live.get("type") != exchange.type:
            problems.insert(0, ("type", live.get("type"), exchange.type))
        rows.append(
            Difference(
                "exchange", exchange.name, "different" if problems else "ok", _describe(problems)
            )
        )
    for queue in wanted.queues:
        live = (live_queues or {}).get(queue.name)
        if live_queues is not None and live is None:
            rows.append(Difference("queue", queue.name, "missing"))
            continue
        if live is None:
            continue
        problems = argument_differences(dict(queue.arguments), live.get("arguments") or {})
        if bool(live.get("durable", True)) != queue.durable:
            problems.insert(0, ("durable", live.get("durable"), queue.durable))
        rows.append(
            Difference("queue", queue.name, "different" if problems else "ok", _describe(problems))
        )
    if live_bindings is not None:
        have = set(live_bindings)
        for binding in wanted.bindings:
            key = (binding.exchange, binding.queue, binding.routing_key)
            rows.append(
                Difference(
                    "binding",
                    f"{binding.exchange} -> {binding.queue} ({binding.routing_key!r})",
                    "ok" if key in have else "missing",
                )
            )
    known_queues = {q.name for q in wanted.queues}
    for name in sorted(live_queues or {}):
        if name not in known_queues and not name.startswith(names.REPLY_QUEUE_PREFIX + "."):
            rows.append(Difference("queue", name, "extra"))
    known_exchanges = {e.name for e in wanted.exchanges}
    for name in sorted(live_exchanges or {}):
        if name and not name.startswith("amq.") and name not in known_exchanges:
            rows.append(Difference("exchange", name, "extra"))
    return rows
