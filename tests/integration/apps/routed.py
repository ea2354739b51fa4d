"""An app with named queues, exchanges and routes (issue #3's worked example)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amqptasks import App, Binding, Exchange, Queue

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

MAIL = Exchange("itest.mail", "topic")
HEADERS = Exchange("itest.headers", "headers")


def route_by_argument(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    if name == "routed.dispatch":
        return {"queue": str(kwargs.get("target") or args[0])}
    return None


app = App(
    "routed",
    queues=[
        Queue("itest.default"),
        Queue("itest.mail", exchange=MAIL, routing_key="mail.#"),
        Queue("itest.reports", max_priority=10),
        Queue("itest.quorum", queue_type="quorum", delivery_limit=3),
        Queue(
            "itest.pdf", bindings=[Binding(HEADERS, arguments={"x-match": "all", "kind": "pdf"})]
        ),
    ],
    routes=[
        {
            "routed.send_*": {"exchange": "itest.mail", "routing_key": "mail.welcome"},
            "routed.report": {"queue": "itest.reports", "priority": 1},
        },
        route_by_argument,
    ],
    default_queue="itest.default",
)


def _append(path: str, line: str) -> None:
    with open(path, "a") as ledger:
        ledger.write(line + "\n")


@app.task(name="routed.send_welcome")
def send_welcome(ledger: str, user: str) -> str:
    _append(ledger, f"mail {user}")
    return f"welcome {user}"


@app.task(name="routed.report")
def report(ledger: str, label: str) -> str:
    _append(ledger, label)
    return label


@app.task(name="routed.dispatch")
def dispatch(target: str) -> str:
    return target


@app.task(name="routed.plain")
def plain(x: int) -> int:
    return x * 2
