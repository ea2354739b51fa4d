"""Reply queues follow their clients (#19): gone soon after the client ends, kept across a
reconnect, and a result for a vanished one costs the worker nothing.

A reply queue is durable with ``x-expires`` = ``result_expires``; RabbitMQ counts that
from the queue's last use, so the queue lives while its client consumes it and
``result_expires`` seconds after. Checked here with a few seconds' lifetime.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

from amqptasks import App
from amqptasks.topology.names import REPLY_QUEUE_PREFIX
from tests.integration.conftest import REPO, cli_env, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import pytest

    from amqptasks.testing.proxy import FaultProxy
    from tests.integration.conftest import WorkerProcess

#: The reply queues' lifetime in these tests, seconds.
LIFETIME = 3
#: What RabbitMQ's expiry timer, a busy box and a rabbitmqctl run may add on top.
MARGIN = 4.0
CLIENTS = 200
AT_ONCE = 20


def reply_queues(rabbit: Any, app_name: str) -> dict[str, dict[str, Any]]:
    """The reply queues of ``app_name``'s clients, as ``rabbitmqctl list_queues`` shows them."""
    out = rabbit.ctl(
        "list_queues", "-q", "--formatter", "json", "name", "durable", "exclusive",
        "auto_delete", "consumers", "messages", "arguments",
    )  # fmt: skip
    prefix = f"{REPLY_QUEUE_PREFIX}.{app_name}."
    rows = json.loads(out) if out.strip() else []
    return {row["name"]: row for row in rows if row["name"].startswith(prefix)}


def consumed_queues(rabbit: Any) -> list[str]:
    """The queue of each consumer (``list_consumers``: ``list_queues`` may lag behind on 3.10)."""
    for attempt in range(5):
        try:
            out = rabbit.ctl("list_consumers", "-q", "--formatter", "json", "queue_name")
            break
        except RuntimeError as exc:
            # rabbitmqctl 3.10 fails the whole listing (badrpc ... :normal) when a queue
            # process ends while it is asked, as expiring reply queues do here: ask again.
            if "badrpc" not in str(exc) or attempt == 4:
                raise
            time.sleep(0.2)
    return [row["queue_name"] for row in (json.loads(out) if out.strip() else [])]


def consumers_of(rabbit: Any, queue: str) -> int:
    """Consumers of ``queue``."""
    return consumed_queues(rabbit).count(queue)


def close_connections(rabbit: Any, name_part: str) -> int:
    """Close, from the broker's side, the connections whose client name has ``name_part``
    (through the management API, as an operator would); return how many."""
    base = rabbit.mgmt_url.rstrip("/")
    auth = "Basic " + base64.b64encode(b"guest:guest").decode()
    with urllib.request.urlopen(
        urllib.request.Request(f"{base}/api/connections", headers={"Authorization": auth}),
        timeout=10,
    ) as answer:
        rows = json.load(answer)
    closed = 0
    for row in rows:
        if name_part in str(row.get("client_properties", {}).get("connection_name", "")):
            request = urllib.request.Request(
                f"{base}/api/connections/{urllib.parse.quote(row['name'], safe='')}",
                method="DELETE",
                headers={"Authorization": auth, "X-Reason": "closed by the test"},
            )
            urllib.request.urlopen(request, timeout=10).close()
            closed += 1
    return closed


def expires_of(row: dict[str, Any]) -> Any:
    arguments = row["arguments"]
    if isinstance(arguments, list):  # 3.10 prints [[key, type, value], ...]
        arguments = {item[0]: item[-1] for item in arguments}
    return arguments.get("x-expires")


def test_reply_queues_of_200_short_lived_clients_are_gone_a_lifetime_after_they_ended(
    rabbit: Any,
    broker_url: str,
    queue_name: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker("-Q", queue_name, "-c", "4")
    env = {**cli_env(broker_url), "AMQPTASKS_RESULT_EXPIRES": str(LIFETIME)}
    run = subprocess.run(
        [sys.executable, "-m", "tests.integration.apps.short_lived_clients", queue_name,
         str(CLIENTS), str(AT_ONCE)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    ended = time.monotonic()
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout)["ok"] == CLIENTS

    # The last clients' queues are still there, unused, with the configured lifetime:
    # durable, neither exclusive nor auto-delete (RabbitMQ 4.3 refuses transient ones).
    left = reply_queues(rabbit, "shortlived")
    assert left, "no reply queue right after the clients ended: were any declared?"
    consumed = consumed_queues(rabbit)
    for name, row in left.items():
        assert expires_of(row) == LIFETIME * 1000, (name, row)
        assert row["durable"] is True and row["exclusive"] is False, (name, row)
        assert row["auto_delete"] is False and name not in consumed, (name, row)

    # Each look takes a rabbitmqctl run (~0.5-1 s here): the time is taken when the first
    # look that finds none has finished, an upper bound of when the last queue went.
    deadline = ended + LIFETIME + MARGIN + 10
    while reply_queues(rabbit, "shortlived") and time.monotonic() < deadline:
        time.sleep(0.2)
    gone_after = time.monotonic() - ended
    assert not reply_queues(rabbit, "shortlived"), "reply queues still there"
    assert gone_after <= LIFETIME + MARGIN, f"reply queues lingered {gone_after:.1f}s"


def test_results_sent_while_a_client_is_disconnected_reach_it_after_it_reconnects(
    rabbit: Any,
    broker_url: str,
    queue_name: str,
    tmp_path: Path,
    fault_proxy: FaultProxy,
    start_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start_worker("-Q", queue_name, "-c", "2")
    monkeypatch.setenv("AMQPTASKS_BROKER_URL", fault_proxy.url(broker_url))  # env wins
    app = App("reconnects", result_expires=30)
    flag, ledger = tmp_path / "flag", tmp_path / "ledger"
    try:
        assert (
            app.send_task("tests.integration.apps.core.add", (1, 2), queue=queue_name).get(
                timeout=20
            )
            == 3
        )
        (queue,) = reply_queues(rabbit, "reconnects")
        flag.write_text("hold")
        waiting = app.send_task(
            "tests.integration.apps.core.wait_for_flag",
            (str(flag), str(ledger), "late"),
            queue=queue_name,
        )
        wait_for(ledger.exists, what="the task to start")

        # The client's link drops and stays down; the task finishes meanwhile.
        fault_proxy.reset()
        wait_for(
            lambda: consumers_of(rabbit, queue) == 0,
            what="the reply queue to lose its consumer",
        )
        os.unlink(flag)
        wait_for(
            lambda: reply_queues(rabbit, "reconnects")[queue]["messages"] >= 1,
            what="the result to wait in the unconsumed reply queue",
        )

        # Back: the client consumes the same queue again by itself (no publish needed).
        fault_proxy.restore()
        assert waiting.get(timeout=20) == "late"
        assert list(reply_queues(rabbit, "reconnects")) == [queue]

        # The same after the broker closes the client's connection (an operator, say).
        wait_for(  # the management API lists a new connection within its stats interval
            lambda: close_connections(rabbit, "amqptasks sync producer reconnects"),
            what="the client's connection to be listed and closed",
        )
        wait_for(
            lambda: consumers_of(rabbit, queue) == 1,
            what="the reply queue to be consumed again",
        )
        again = app.send_task("tests.integration.apps.core.add", (2, 2), queue=queue_name)
        assert again.get(timeout=20) == 4
    finally:
        app.close()


def test_a_result_for_an_expired_reply_queue_is_logged_and_the_call_settled(
    rabbit: Any,
    broker_url: str,
    queue_name: str,
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = start_worker("-Q", queue_name, "-c", "2")
    ledger = tmp_path / "ledger"
    app = App("vanishes", broker_url, result_expires=1)
    result = app.send_task(
        "tests.integration.apps.core.slow", (str(ledger), "t", 3.0), queue=queue_name
    )
    wait_for(ledger.exists, what="the task to start")
    app.close()  # the caller is gone; its reply queue expires before the task ends
    wait_for(lambda: not reply_queues(rabbit, "vanishes"), what="the reply queue to expire")

    wait_for(lambda: "result not delivered" in worker.log(), timeout=20, what="the warning")
    assert result.id in worker.log()
    wait_for(
        lambda: rabbit.queue_depths().get(queue_name) == (0, 0),
        what="the call to be settled (acked, not requeued)",
    )
    assert worker.log().count("result not delivered") == 1  # once: no loop
    assert worker.proc.poll() is None
    again = App("after", broker_url)
    try:
        call = again.send_task("tests.integration.apps.core.add", (5, 5), queue=queue_name)
        assert call.get(timeout=20) == 10
    finally:
        again.close()
