"""Topology and routing on a real node: exchanges, priorities, quorum queues, estates."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pika
import pytest

from amqptasks import App, Queue, TopologyMismatch, Unroutable
from amqptasks.testing import RabbitNode
from tests.integration.conftest import (
    ROUTED_APP,
    cli_env,
    lines,
    wait_for,
    worker_command,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

ROUTED_QUEUES = ["itest.default", "itest.mail", "itest.reports", "itest.quorum", "itest.pdf"]


@pytest.fixture
def clean_routed(routed: Any, broker_url: str) -> Iterator[Any]:
    """The routed app, with its queues emptied before and after the test."""

    def purge() -> None:
        connection = pika.BlockingConnection(pika.URLParameters(broker_url))
        channel = connection.channel()
        for name in ROUTED_QUEUES:
            try:
                channel.queue_purge(name)
            except pika.exceptions.ChannelClosedByBroker:
                channel = connection.channel()  # not declared yet
        connection.close()

    purge()
    yield routed
    purge()


def run_cli(broker_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amqptasks", *args],
        env=cli_env(broker_url),
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_glob_route_through_a_topic_exchange(
    clean_routed: Any, start_worker: Any, tmp_path: Path
) -> None:
    start_worker("-A", ROUTED_APP, "-Q", "itest.mail", app=ROUTED_APP)
    ledger = tmp_path / "ledger"
    result = clean_routed.send_welcome.delay(str(ledger), "ada")
    assert result.get(timeout=20) == "welcome ada"
    assert lines(ledger) == ["mail ada"]


def test_router_function_and_headers_exchange(clean_routed: Any, start_worker: Any) -> None:
    start_worker("-Q", "itest.pdf,itest.default", app=ROUTED_APP)
    # the router function sends dispatch(<queue>) to that queue
    assert clean_routed.dispatch.delay("itest.default").get(timeout=20) == "itest.default"
    # a headers exchange routes on the message headers, not the routing key
    via_headers = clean_routed.plain.apply_async(
        (21,), exchange="itest.headers", headers={"kind": "pdf"}
    )
    assert via_headers.get(timeout=20) == 42


def test_exchange_without_a_matching_binding_is_unroutable(clean_routed: Any) -> None:
    with pytest.raises(Unroutable) as caught:
        clean_routed.plain.apply_async((1,), exchange="itest.mail", routing_key="billing.x")
    assert caught.value.exchange == "itest.mail"
    assert caught.value.routing_key == "billing.x"
    with pytest.raises(Unroutable):
        clean_routed.plain.apply_async((1,), exchange="itest.headers", headers={"kind": "doc"})


def test_high_priority_tasks_run_first(
    clean_routed: Any, start_worker: Any, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    app = clean_routed.app
    with app.batch():
        low = [clean_routed.report.delay(str(ledger), f"low-{i}") for i in range(50)]
        high = [
            clean_routed.report.apply_async((str(ledger), f"high-{i}"), priority=9)
            for i in range(50)
        ]
    start_worker("-Q", "itest.reports", "-c", "1", "--prefetch-multiplier", "1", app=ROUTED_APP)
    for result in high + low:
        result.get(timeout=60)
    order = lines(ledger)
    assert len(order) == 100
    assert all(label.startswith("high") for label in order[:50]), order[:55]
    assert all(label.startswith("low") for label in order[50:])


def test_quorum_queue_round_trip(clean_routed: Any, start_worker: Any, rabbit: Any) -> None:
    start_worker("-Q", "itest.quorum", app=ROUTED_APP)
    result = clean_routed.plain.apply_async((5,), queue="itest.quorum")
    assert result.get(timeout=20) == 10
    listed = rabbit.ctl("list_queues", "-q", "--formatter", "json", "name", "type", "arguments")
    by_name = {q["name"]: q for q in json.loads(listed)}
    assert by_name["itest.quorum"]["type"] == "quorum"
    assert by_name["itest.quorum.dlq"]["type"] == "quorum"


def test_app_default_queue_type_quorum(broker_env: str, unique_name: Any, rabbit: Any) -> None:
    name = unique_name("qq")
    app = App("quorum-default", default_queue_type="quorum", default_queue=name)
    task = app.task(lambda x: x, name="qq.echo")
    try:
        task.apply_async((1,), ignore_result=True)
        listed = json.loads(rabbit.ctl("list_queues", "-q", "--formatter", "json", "name", "type"))
        assert {q["name"]: q["type"] for q in listed}[name] == "quorum"
    finally:
        app.close()
        connection = pika.BlockingConnection(pika.URLParameters(broker_env))
        connection.channel().queue_delete(name)
        connection.channel().queue_delete(name + ".dlq")
        connection.close()


def test_mismatched_queue_is_reported_with_its_diff_and_the_others_are_served(
    core: Any, start_worker: Any, queue_name: str, unique_name: Any, amqp: Any, broker_url: str
) -> None:
    operators = unique_name("ops")
    amqp.queue_declare(
        operators, durable=True, arguments={"x-max-length": 10, "x-queue-mode": "lazy"}
    )
    try:
        worker = start_worker("-Q", f"{operators},{queue_name}")
        log = worker.log()
        assert "not consuming queues whose topology differs" in log
        assert operators in log
        assert "x-max-length: live 10, wanted (absent)" in log
        assert "x-queue-mode: live 'lazy', wanted (absent)" in log
        assert "x-dead-letter-routing-key: live (absent)" in log
        assert "ways out" in log
        assert core.add.apply_async((2, 2), queue=queue_name).get(timeout=20) == 4
        # the operator's queue is untouched
        assert amqp.queue_declare(operators, passive=True).method.consumer_count == 0
    finally:
        amqp.queue_delete(operators)
        amqp.queue_delete(operators + ".dlq")


def test_every_mismatch_is_reported_at_once(broker_env: str, unique_name: Any, amqp: Any) -> None:
    first, second = unique_name("a"), unique_name("b")
    for name in (first, second):
        amqp.queue_declare(name, durable=True, arguments={"x-max-length": 3})
    app = App("mismatch", queues=[Queue(first), Queue(second)])
    from amqptasks.transport.declare_sync import apply_declarations

    try:
        with pytest.raises(TopologyMismatch) as caught:
            apply_declarations(
                app.settings.broker,
                app.declarations(),
                "declare",
                management=app.management(),
                connection_name="test",
            )
        message = str(caught.value)
        assert first in message and second in message
        assert message.count("x-max-length: live 3, wanted (absent)") == 2
    finally:
        for name in (first, second):
            amqp.queue_delete(name)
            amqp.queue_delete(name + ".dlq")
        app.close()


def test_passive_mode_as_a_user_without_configure_permission(
    core: Any, rabbit: Any, broker_url: str, queue_name: str, tmp_path: Path
) -> None:
    rabbit.add_user("noconf", "noconf-pw", configure="^$", write=".*", read=".*")
    limited = broker_url.replace("guest:guest@", "noconf:noconf-pw@")
    env = {**cli_env(limited), "AMQPTASKS_TOPOLOGY_MODE": "passive"}
    # declare mode needs configure permission: a clear error
    done = subprocess.run(
        worker_command("-Q", queue_name),
        env={**env, "AMQPTASKS_TOPOLOGY_MODE": "declare"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "AccessRefused" in done.stderr and "noconf" in done.stderr
    # passive mode before the operator made the queue: says what is missing
    done = subprocess.run(
        worker_command("-Q", queue_name), env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "passive mode" in done.stderr and queue_name in done.stderr
    # the operator (guest) applies the topology; the limited worker then serves it
    applied = run_cli(
        broker_url, "topology", "apply", "-A", "tests.integration.apps.core:app", "-Q", queue_name
    )
    assert applied.returncode == 0, applied.stderr
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            worker_command("-Q", queue_name), env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        wait_for(
            lambda: "worker ready" in log_path.read_text() or proc.poll() is not None,
            timeout=40,
            what="the passive worker",
        )
        assert proc.poll() is None, log_path.read_text()
        assert core.add.apply_async((3, 4), queue=queue_name).get(timeout=20) == 7
    finally:
        proc.terminate()
        proc.wait(30)


def _statuses(table: str) -> set[str]:
    """The status cells of a ``topology diff`` table."""
    return set(re.findall(r"│\s*(missing|different|extra)\s*│", table))


def test_cli_show_diff_apply(broker_url: str, routed: Any, unique_name: Any, amqp: Any) -> None:
    shown = run_cli(broker_url, "topology", "show", "-A", ROUTED_APP)
    assert shown.returncode == 0, shown.stderr
    for text in (
        "itest.reports",
        "x-max-priority=10",
        "itest.mail",
        "topic",
        "mail.#",
        "routed.send_welcome",
        "mail.welcome",
    ):
        assert text in shown.stdout
    dry = run_cli(broker_url, "topology", "apply", "-A", ROUTED_APP, "--dry-run")
    assert dry.returncode == 0 and "dry run" in dry.stdout
    applied = run_cli(broker_url, "topology", "apply", "-A", ROUTED_APP)
    assert applied.returncode == 0, applied.stderr
    diff = run_cli(broker_url, "topology", "diff", "-A", ROUTED_APP)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    # Other tests' queues show as "extra", and their names may contain "missing".
    assert not {"missing", "different"} & _statuses(diff.stdout), diff.stdout
    stray = unique_name("stray")
    amqp.queue_declare(stray, durable=True)
    amqp.queue_delete("itest.pdf")
    try:
        diff = run_cli(broker_url, "topology", "diff", "-A", ROUTED_APP)
        assert diff.returncode == 1
        assert "missing" in diff.stdout and "itest.pdf" in diff.stdout
        assert stray in diff.stdout and "extra" in diff.stdout
    finally:
        amqp.queue_delete(stray)
        run_cli(broker_url, "topology", "apply", "-A", ROUTED_APP)


def test_exported_definitions_import_into_a_fresh_node_and_serve_passively(
    broker_url: str, routed: Any
) -> None:
    exported = run_cli(broker_url, "topology", "export", "-A", ROUTED_APP)
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    assert {q["name"] for q in document["queues"]} >= set(ROUTED_QUEUES)
    base = Path(tempfile.mkdtemp(prefix="amqptasks-import-"))
    node = RabbitNode(base)
    try:
        node.start()
        definitions = base / "definitions.json"
        definitions.write_text(exported.stdout)
        os.chmod(base, 0o755)
        node.ctl("import_definitions", str(definitions))
        env = {**cli_env(node.amqp_url), "AMQPTASKS_TOPOLOGY_MODE": "passive"}
        env.pop("AMQPTASKS_MANAGEMENT_URL", None)
        log = base / "worker.log"
        with log.open("wb") as log_file:
            proc = subprocess.Popen(
                worker_command("-Q", ",".join(ROUTED_QUEUES), app=ROUTED_APP),
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(
                lambda: "worker ready" in log.read_text() or proc.poll() is not None,
                timeout=40,
                what="the passive worker on the imported node",
            )
            assert proc.poll() is None, log.read_text()
            text = log.read_text()
            assert "not consuming" not in text
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)
