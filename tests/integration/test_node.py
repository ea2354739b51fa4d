"""Integration tests for the private RabbitMQ node used by the test suite."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pika
import pika.exceptions
import pytest

from amqptasks.testing import RabbitNode

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.integration


def _params(url: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.blocked_connection_timeout = 5
    return params


def _url_for(port: int, user: str, password: str) -> str:
    return f"amqp://{user}:{password}@127.0.0.1:{port}/%2F"


def _roundtrip(url: str, queue: str, body: bytes) -> bytes | None:
    """Declare ``queue``, publish ``body`` to it, basic.get it back, delete the queue."""
    with pika.BlockingConnection(_params(url)) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        # Durable: RabbitMQ 4.3 refuses transient non-exclusive queues.
        ch.queue_declare(queue, durable=True)
        try:
            ch.basic_publish("", queue, body, mandatory=True)
            method, _props, got = ch.basic_get(queue, auto_ack=True)
            return None if method is None else bytes(got)
        finally:
            ch.queue_delete(queue)


def test_node_accepts_amqp_publish_and_get(
    rabbit: RabbitNode, unique_name: Callable[[str], str]
) -> None:
    queue = unique_name("q")
    assert _roundtrip(rabbit.amqp_url, queue, b"hello") == b"hello"


def test_queue_depths_reports_ready_and_unacked(
    rabbit: RabbitNode, unique_name: Callable[[str], str]
) -> None:
    queue = unique_name("depth")
    with pika.BlockingConnection(_params(rabbit.amqp_url)) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare(queue, durable=True)
        try:
            for i in range(3):
                ch.basic_publish("", queue, b"m%d" % i)
            method, _props, _body = ch.basic_get(queue, auto_ack=False)
            assert method is not None
            assert rabbit.queue_depths()[queue] == (2, 1)
            ch.basic_ack(method.delivery_tag)
        finally:
            ch.queue_delete(queue)
    assert queue not in rabbit.queue_depths()


def test_add_user_can_connect_and_wrong_password_is_refused(
    rabbit: RabbitNode, unique_name: Callable[[str], str]
) -> None:
    user = unique_name("user")
    rabbit.add_user(user, "s3cret")
    try:
        port = int(rabbit.amqp_url.rsplit(":", 1)[1].split("/", 1)[0])
        assert _roundtrip(_url_for(port, user, "s3cret"), unique_name("q"), b"x") == b"x"
        with pytest.raises(
            (
                pika.exceptions.ProbableAuthenticationError,
                pika.exceptions.AuthenticationError,
            )
        ):
            pika.BlockingConnection(_params(_url_for(port, user, "wrong")))
    finally:
        rabbit.ctl("delete_user", user)


def test_management_api_listens_on_its_port(rabbit: RabbitNode) -> None:
    req = urllib.request.Request(f"{rabbit.mgmt_url}/api/overview")
    req.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest
    with urllib.request.urlopen(req, timeout=10) as resp:
        overview = json.load(resp)
    assert overview["node"] == rabbit.name


def test_private_node_lifecycle_restart_and_isolation(
    rabbit: RabbitNode, unique_name: Callable[[str], str]
) -> None:
    """A second private node: extra conf, stop_app/start_app, stop, cleanup.

    Also checks that stopping it leaves the session broker alone.
    """
    node = RabbitNode(extra_conf="consumer_timeout = 60000\n")
    with node:
        base_dir = node.base_dir
        assert node.amqp_url != rabbit.amqp_url
        assert node.name != getattr(rabbit, "name", None)
        assert "{ok,60000}" in node.ctl("eval", "application:get_env(rabbit, consumer_timeout).")
        pid = int((base_dir / "rabbitmq.pid").read_text().strip())

        assert _roundtrip(node.amqp_url, unique_name("q"), b"before") == b"before"

        node.stop_app()
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika.BlockingConnection(_params(node.amqp_url))

        node.start_app()
        assert _roundtrip(node.amqp_url, unique_name("q"), b"after") == b"after"

    assert not base_dir.exists(), "temporary node dir should be removed by stop()"
    assert not _is_beam(pid), "beam of the private node still running"
    # The session broker must be unaffected by starting/stopping another node.
    assert _roundtrip(rabbit.amqp_url, unique_name("q"), b"still-up") == b"still-up"


def _is_beam(pid: int) -> bool:
    try:
        return b"beam" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_stop_is_idempotent_and_keeps_caller_dir(tmp_path: Path) -> None:
    node = RabbitNode(tmp_path / "node")
    node.stop()  # never started: no-op
    assert not node.started
    assert os.fspath(node.base_dir) == os.fspath((tmp_path / "node").resolve())


def test_bad_config_fails_loudly_with_log_excerpt(tmp_path: Path) -> None:
    node = RabbitNode(tmp_path / "bad", extra_conf="this_is_not_a_setting = 42")
    with pytest.raises(RuntimeError, match="this_is_not_a_setting"):
        node.start()
    assert not node.started
