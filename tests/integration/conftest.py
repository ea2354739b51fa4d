"""Integration fixtures: the test app bound to the session broker, and worker processes."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pika
import pytest

from amqptasks.testing.proxy import FaultProxy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from amqptasks import App

REPO = Path(__file__).resolve().parents[2]
CORE_APP = "tests.integration.apps.core:app"
READY_TIMEOUT = 40.0


@pytest.fixture(scope="session")
def broker_env(broker_url: str, rabbit: Any) -> str:
    """Point apps (here and in worker subprocesses) at the session broker."""
    os.environ["AMQPTASKS_BROKER_URL"] = broker_url
    management = getattr(rabbit, "mgmt_url", None)
    if management:
        os.environ["AMQPTASKS_MANAGEMENT_URL"] = management
    return broker_url


@pytest.fixture(scope="session")
def core(broker_env: str, broker_url: str) -> Iterator[Any]:
    """The ``tests.integration.apps.core`` module, its app pointed at the session broker."""
    module = importlib.import_module("tests.integration.apps.core")
    app: App = module.app
    assert app.settings.broker_url == broker_url
    yield module
    app.close()


@dataclass
class WorkerProcess:
    """An ``amqptasks worker`` subprocess and its log."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "worker ready" in self.log():
                return
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited with {self.proc.returncode} before it was ready:\n{self.log()}"
                )
            time.sleep(0.1)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.log()}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def worker_command(*args: str, app: str = CORE_APP) -> list[str]:
    return [sys.executable, "-m", "amqptasks", "worker", "-A", app, "-l", "info", *args]


def cli_env(broker_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["AMQPTASKS_BROKER_URL"] = broker_url
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="session")
def routed(broker_env: str) -> Iterator[Any]:
    """The ``tests.integration.apps.routed`` module (queues, exchanges and routes)."""
    module = importlib.import_module("tests.integration.apps.routed")
    yield module
    module.app.close()


ROUTED_APP = "tests.integration.apps.routed:app"


@pytest.fixture
def start_worker(
    broker_env: str, broker_url: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: ``start_worker("-Q", queue, "-c", "2")`` starts a worker and waits until ready."""
    started: list[WorkerProcess] = []

    def start(
        *args: str, app: str = CORE_APP, wait: bool = True, env: dict[str, str] | None = None
    ) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                worker_command(*args, app=app),
                cwd=REPO,
                env={**cli_env(broker_url), **(env or {})},
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(proc, log_path, list(args))
        started.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.signal(signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()


@pytest.fixture
def amqp(broker_url: str) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    """A plain pika channel for looking at queues the way an operator would."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.confirm_delivery()
    yield channel
    if connection.is_open:
        connection.close()


@pytest.fixture
def queue_name(unique_name: Callable[[str], str], broker_url: str) -> Iterator[str]:
    """A unique work queue name; the queue and its DLQ are deleted afterwards."""
    name = unique_name("q")
    yield name
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        for queue in (name, f"{name}.dlq"):
            channel.queue_delete(queue)
    finally:
        connection.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def dlq_headers(broker_url: str, dlq: str) -> list[dict[str, Any]]:
    """Headers of every message in ``dlq`` (read without acking: they stay there)."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        found = []
        while True:
            method, properties, _body = channel.basic_get(dlq, auto_ack=False)
            if method is None:
                return found
            found.append(dict(properties.headers or {}))
    finally:
        connection.close()


@pytest.fixture
def fault_proxy(broker_url: str) -> Iterator[FaultProxy]:
    """A TCP fault proxy in front of the session broker (``proxy.url(broker_url)``)."""
    from amqptasks.config import BrokerURL

    target = BrokerURL.parse(broker_url)
    with FaultProxy(target.host, target.port, lifetime=300) as proxy:
        yield proxy
