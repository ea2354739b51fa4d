"""Shared fixtures.

Broker fixtures are lazy: a private RabbitMQ node is started only when a test asks for
``rabbit`` or ``broker_url``, so unit tests run without one.  Set ``AMQPTASKS_TEST_URL``
to use an existing broker instead (ctl-based helpers are then unavailable).  A broker
that cannot be started or reached makes the requesting tests ERROR, never skip.

``AMQPTASKS_TEST_BROKER=4`` runs the private node on RabbitMQ 4.x (a Debian trixie
chroot, see ``deploy/local/rabbitmq-node``) instead of the machine's RabbitMQ; tests
that depend on the version ask ``broker_version`` (read from the broker, never assumed).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pika
import pytest

from amqptasks.testing import RabbitNode
from amqptasks.testing.node import BROKERS, wait_for_amqp

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

TEST_URL_ENV = "AMQPTASKS_TEST_URL"
KEEP_DIR_ENV = "AMQPTASKS_KEEP_NODE_DIR"
BROKER_ENV = "AMQPTASKS_TEST_BROKER"
HANDSHAKE_TIMEOUT = 30.0
#: The session node's consumer timeout, in milliseconds.
CONSUMER_TIMEOUT_MS = 60_000
CONSUMER_TIMEOUT_CONF = f"consumer_timeout = {CONSUMER_TIMEOUT_MS}\n"


class ExternalBroker:
    """Stand-in for :class:`RabbitNode` when ``AMQPTASKS_TEST_URL`` points at a broker.

    Only ``amqp_url`` is available; helpers that need ``rabbitmqctl`` on a node we
    control raise a clear error instead.
    """

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url

    def _unsupported(self, what: str) -> RuntimeError:
        return RuntimeError(
            f"{what} needs a private RabbitMQ node started by the test suite, but "
            f"{TEST_URL_ENV} is set (external broker {self.amqp_url.split('@')[-1]}); "
            f"unset {TEST_URL_ENV} to run this test"
        )

    def ctl(self, *args: str, timeout: float = 60) -> str:
        raise self._unsupported(f"rabbitmqctl {' '.join(args)}")

    def stop_app(self) -> None:
        raise self._unsupported("stop_app()")

    def start_app(self) -> None:
        raise self._unsupported("start_app()")

    def add_user(self, user: str, password: str, **_: str) -> None:
        raise self._unsupported("add_user()")

    def queue_depths(self, vhost: str = "/") -> dict[str, tuple[int, int]]:
        raise self._unsupported("queue_depths()")

    def __getattr__(self, item: str) -> object:
        # name, mgmt_url, amqp_port, base_dir, ...: not known for an external broker.
        # AttributeError (not RuntimeError) keeps getattr(obj, x, default) working.
        raise AttributeError(str(self._unsupported(f"RabbitNode.{item}")))


@pytest.fixture(scope="session")
def rabbit() -> Iterator[RabbitNode | ExternalBroker]:
    """A RabbitMQ broker for the whole session (private node unless AMQPTASKS_TEST_URL)."""
    external = os.environ.get(TEST_URL_ENV)
    if external:
        try:
            wait_for_amqp(external, timeout=HANDSHAKE_TIMEOUT)
        except TimeoutError as exc:
            raise pytest.UsageError(f"{TEST_URL_ENV} broker is not reachable: {exc}") from exc
        yield ExternalBroker(external)
        return

    base_dir = Path(tempfile.mkdtemp(prefix="amqptasks-test-rabbit-", dir="/tmp"))
    # consumer_timeout of 60 s (default 30 min): tests prove delayed tasks never hold a
    # delivery long enough to trip it (issue #4).
    broker = os.environ.get(BROKER_ENV) or "system"
    if broker not in BROKERS:
        raise pytest.UsageError(f"{BROKER_ENV} must be one of {', '.join(BROKERS)}, got {broker!r}")
    node = RabbitNode(base_dir, extra_conf=CONSUMER_TIMEOUT_CONF, broker=broker)
    try:
        node.start()
        wait_for_amqp(node.amqp_url, timeout=HANDSHAKE_TIMEOUT)
    except BaseException:
        # Keep the directory (logs!) for a failed start; make sure no node lingers.
        with contextlib.suppress(Exception):
            node.stop()
        raise
    try:
        yield node
    finally:
        node.stop()
        if not os.environ.get(KEEP_DIR_ENV):
            shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def broker_url(rabbit: RabbitNode | ExternalBroker) -> str:
    """AMQP URL of the session broker."""
    return rabbit.amqp_url


@pytest.fixture(scope="session")
def broker_version(broker_url: str) -> tuple[int, ...]:
    """The session broker's RabbitMQ version, from its AMQP server properties."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        version = connection._impl.server_properties.get("version", b"0")
    finally:
        connection.close()
    text = version.decode() if isinstance(version, bytes) else str(version)
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


_SLUG_RE = re.compile(r"[^a-z0-9]+")


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory for per-test unique names: ``unique_name("q")`` -> ``q-test-foo-1a2b3c4d``."""
    slug = _SLUG_RE.sub("-", request.node.name.lower()).strip("-")[:60].strip("-")

    def make(prefix: str) -> str:
        return f"{prefix}-{slug}-{uuid.uuid4().hex[:8]}"

    return make


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration with the ``integration`` marker."""
    integration_dir = Path(__file__).parent / "integration"
    for item in items:
        if integration_dir in item.path.parents:
            item.add_marker(pytest.mark.integration)
