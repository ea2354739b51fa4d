"""TLS on a real node: amqps with client certificates, the EXTERNAL login, and each bad case.

One TLS node for the module (its own, not the session node): certificates made here
with ``cryptography`` (amqptasks.testing.certs); the node requires client
certificates signed by its CA and maps a certificate's common name to a user for
EXTERNAL. A worker (started with the --broker-tls-* options, logging in with
EXTERNAL) runs tasks that the sync (pika) and async (aio-pika) producers send.
Every failure is one line that names what to fix, and shows no password.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from amqptasks import App, AuthenticationFailed, TLSError
from amqptasks.exceptions import BrokerError
from amqptasks.testing.certs import Certificates, make_certificates
from amqptasks.testing.node import RabbitNode
from tests.integration.conftest import CORE_APP, REPO, WorkerProcess, cli_env, worker_command

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

URL_PASSWORD = "url-s3cret-pw"
ADD = "tests.integration.apps.core.add"
TRANSPORTS = ["sync", "async"]


@pytest.fixture(scope="module", autouse=True)
def _own_broker_settings() -> Iterator[None]:
    """The apps here name the TLS node themselves: an AMQPTASKS_BROKER_URL that an earlier
    test module set for the session broker would win over them (the environment does)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AMQPTASKS_BROKER_URL", "AMQPTASKS_MANAGEMENT_URL"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def node(certs: Certificates) -> Iterator[RabbitNode]:
    broker = os.environ.get("AMQPTASKS_TEST_BROKER") or "system"
    tls_node = RabbitNode(tls_dir=certs.directory, broker=broker)
    tls_node.start()
    try:
        # EXTERNAL logs the client certificate's common name in: that user must exist.
        tls_node.add_user(certs.client_name, "not-used-by-external")
        # guest may log in from localhost only, and amqps goes to localhost.
        yield tls_node
    finally:
        tls_node.stop()


def good_settings(certs: Certificates) -> dict[str, Any]:
    return {
        "broker_tls_ca_file": str(certs.ca),
        "broker_tls_cert_file": str(certs.client),
        "broker_tls_key_file": str(certs.client_key),
    }


def tls_url(node: RabbitNode, host: str = "localhost", password: str = "guest") -> str:
    return f"amqps://guest:{password}@{host}:{node.tls_port}//"


@pytest.fixture(scope="module")
def worker(
    node: RabbitNode, certs: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WorkerProcess, str]]:
    """A worker on the TLS port, logged in with EXTERNAL, configured by CLI options."""
    queue = "tls-tasks"
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    args = [
        *("-Q", queue, "-c", "2"),
        *("--broker-tls-ca-file", str(certs.ca)),
        *("--broker-tls-cert-file", str(certs.client)),
        *("--broker-tls-key-file", str(certs.client_key)),
        *("--broker-login-method", "EXTERNAL"),
    ]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            worker_command(*args, app=CORE_APP),
            cwd=REPO,
            env=cli_env(f"amqps://localhost:{node.tls_port}//"),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    process = WorkerProcess(proc, log_path, args)
    try:
        process.wait_ready()
        yield process, queue
    finally:
        process.kill()


def run(app: App, transport: str, *args: Any, queue: str) -> Any:
    """Send ``add`` through the sync (pika) or async (aio-pika) producer; its result."""
    if transport == "sync":
        try:
            return app.send_task(ADD, args, queue=queue).get(timeout=20)
        finally:
            app.close()

    async def go() -> Any:
        try:
            result = await app.asend_task(ADD, args, queue=queue)
            return await result.aget(timeout=20)
        finally:
            await app.aclose()

    return asyncio.run(go())


def failure(app: App, transport: str) -> BrokerError:
    """The error a producer raises when it cannot connect."""
    with pytest.raises(BrokerError) as caught:
        run(app, transport, 1, 1, queue="tls-never-declared")
    return caught.value


def assert_clean(error: BaseException, *secrets: str) -> None:
    text = f"{error}\n{error!r}"
    assert "\n" not in str(error)
    for secret in (URL_PASSWORD, *secrets):
        assert secret not in text


# -- it works ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_task_round_trip_over_amqps_with_client_certificate(
    node: RabbitNode, certs: Certificates, worker: tuple[WorkerProcess, str], transport: str
) -> None:
    _process, queue = worker
    # The producer's key is the encrypted copy: its password is a setting, never shown.
    app = App(
        "tls-producer",
        broker_url=tls_url(node),
        **{
            **good_settings(certs),
            "broker_tls_key_file": str(certs.client_key_encrypted),
            "broker_tls_key_password": certs.key_password,
        },
    )
    assert certs.key_password not in repr(app.settings)
    assert run(app, transport, 2, 3, queue=queue) == 5


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_external_login_takes_the_user_from_the_certificate(
    node: RabbitNode, certs: Certificates, worker: tuple[WorkerProcess, str], transport: str
) -> None:
    _process, queue = worker
    app = App(
        "tls-external",
        broker_url=f"amqps://localhost:{node.tls_port}//",
        broker_login_method="EXTERNAL",
        **good_settings(certs),
    )
    assert run(app, transport, 20, 22, queue=queue) == 42
    # The worker is connected over TLS as the certificate's common name.
    rows = node.ctl("list_connections", "-q", "user", "ssl", "name").splitlines()
    assert any(re.match(rf"{certs.client_name}\s+true\s+", row) for row in rows), rows


def test_server_hostname_override_accepts_a_certificate_for_another_name(
    node: RabbitNode, certs: Certificates, worker: tuple[WorkerProcess, str]
) -> None:
    _process, queue = worker
    app = App(
        "tls-override",
        broker_url=tls_url(node, host="127.0.0.1"),
        broker_tls_server_hostname="localhost",
        **good_settings(certs),
    )
    assert run(app, "sync", 1, 2, queue=queue) == 3


# -- each bad case: one line that says what to fix --------------------------------------------

#: Stands for a certificate's end date in the expected messages.
DATE = "{DATE}"


@dataclass(frozen=True)
class Bad:
    """A producer's broker URL and settings, and the one line its connection fails with."""

    url: str
    settings: dict[str, Any]
    error: type[BrokerError]
    message: str

    def check(self, transport: str) -> None:
        app = App("tls-bad", broker_url=self.url, **self.settings)
        error = failure(app, transport)
        assert isinstance(error, self.error), repr(error)
        pattern = re.escape(self.message).replace(re.escape(DATE), r"\d{4}-\d\d-\d\d \d\d:\d\d UTC")
        assert re.fullmatch(pattern, str(error)), str(error)
        assert_clean(error)


def client_certificate(certs: Certificates, cert: Path, key: Path) -> dict[str, Any]:
    return {
        **good_settings(certs),
        "broker_tls_cert_file": str(cert),
        "broker_tls_key_file": str(key),
    }


def unknown_ca(node: RabbitNode, certs: Certificates) -> Bad:
    return Bad(
        tls_url(node, password=URL_PASSWORD),
        {**good_settings(certs), "broker_tls_ca_file": str(certs.other_ca)},
        TLSError,
        f"cannot connect to amqps://guest:***@localhost:{node.tls_port}/: the broker's "
        f"certificate at localhost:{node.tls_port} (issuer 'amqptasks test CA') is signed by "
        f"a CA not in broker_tls_ca_file '{certs.other_ca}': set broker_tls_ca_file "
        f"(AMQPTASKS_BROKER_TLS_CA_FILE) to the CA certificate that signed it",
    )


def ca_not_in_the_system_store(node: RabbitNode, certs: Certificates) -> Bad:
    settings = {**good_settings(certs)}
    del settings["broker_tls_ca_file"]
    return Bad(
        tls_url(node, password=URL_PASSWORD),
        settings,
        TLSError,
        f"cannot connect to amqps://guest:***@localhost:{node.tls_port}/: the broker's "
        f"certificate at localhost:{node.tls_port} (issuer 'amqptasks test CA') is signed by "
        f"a CA not in the system's CA store: set broker_tls_ca_file "
        f"(AMQPTASKS_BROKER_TLS_CA_FILE) to the CA certificate that signed it",
    )


def wrong_host_name(node: RabbitNode, certs: Certificates) -> Bad:
    return Bad(
        tls_url(node, "127.0.0.1", URL_PASSWORD),
        good_settings(certs),
        TLSError,
        f"cannot connect to amqps://guest:***@127.0.0.1:{node.tls_port}/: the broker's "
        f"certificate at 127.0.0.1:{node.tls_port} is for 'localhost', not '127.0.0.1': "
        f"connect with a host name it names, or set broker_tls_server_hostname "
        f"(AMQPTASKS_BROKER_TLS_SERVER_HOSTNAME) to one of them",
    )


def expired_client_certificate(node: RabbitNode, certs: Certificates) -> Bad:
    return Bad(
        tls_url(node, password=URL_PASSWORD),
        client_certificate(certs, certs.expired_client, certs.expired_client_key),
        TLSError,
        f"cannot connect to amqps://guest:***@localhost:{node.tls_port}/: the broker at "
        f"localhost:{node.tls_port} refused the client certificate '{certs.expired_client}': "
        f"it expired on {DATE}: renew it (broker_tls_cert_file)",
    )


def client_certificate_from_another_ca(node: RabbitNode, certs: Certificates) -> Bad:
    return Bad(
        tls_url(node, password=URL_PASSWORD),
        client_certificate(certs, certs.stranger_client, certs.stranger_client_key),
        TLSError,
        f"cannot connect to amqps://guest:***@localhost:{node.tls_port}/: the broker at "
        f"localhost:{node.tls_port} refused the client certificate '{certs.stranger_client}' "
        f"(issuer 'amqptasks other CA'): it does not trust its issuer: use a certificate "
        f"signed by a CA in the broker's ssl_options.cacertfile (broker_tls_cert_file)",
    )


def no_client_certificate(node: RabbitNode, certs: Certificates) -> Bad:
    return Bad(
        tls_url(node, password=URL_PASSWORD),
        {"broker_tls_ca_file": str(certs.ca)},
        TLSError,
        f"cannot connect to amqps://guest:***@localhost:{node.tls_port}/: the broker at "
        f"localhost:{node.tls_port} requires a client certificate: set broker_tls_cert_file "
        f"and broker_tls_key_file",
    )


def plain_amqp_to_the_tls_port(node: RabbitNode, certs: Certificates) -> Bad:
    return Bad(
        f"amqp://guest:{URL_PASSWORD}@localhost:{node.tls_port}//",
        {},
        TLSError,
        f"cannot connect to amqp://guest:***@localhost:{node.tls_port}/: port {node.tls_port} "
        f"speaks TLS, not plain AMQP: use amqps:// for it (or the broker's plain AMQP port, "
        f"usually 5672)",
    )


def tls_to_the_plain_port(node: RabbitNode, certs: Certificates) -> Bad:
    return Bad(
        f"amqps://guest:{URL_PASSWORD}@localhost:{node.amqp_port}//",
        good_settings(certs),
        TLSError,
        f"cannot connect to amqps://guest:***@localhost:{node.amqp_port}/: port "
        f"{node.amqp_port} speaks plain AMQP, not TLS: use amqp:// for it (or the broker's "
        f"TLS port, usually 5671)",
    )


def external_login_without_a_user(node: RabbitNode, certs: Certificates) -> Bad:
    return Bad(
        f"amqps://localhost:{node.tls_port}//",
        {
            **client_certificate(certs, certs.unmapped_client, certs.unmapped_client_key),
            "broker_login_method": "EXTERNAL",
        },
        AuthenticationFailed,
        f"cannot connect to amqps://localhost:{node.tls_port}/: the broker refused the "
        f"EXTERNAL login of user '{certs.unmapped_name}' (the common name of "
        f"'{certs.unmapped_client}'): create that user (rabbitmqctl add_user, "
        f"set_permissions) or check the broker's ssl_cert_login_from",
    )


BAD_CASES = [
    unknown_ca,
    ca_not_in_the_system_store,
    wrong_host_name,
    expired_client_certificate,
    client_certificate_from_another_ca,
    no_client_certificate,
    plain_amqp_to_the_tls_port,
    tls_to_the_plain_port,
    external_login_without_a_user,
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", BAD_CASES, ids=lambda case: case.__name__)
def test_bad_case_fails_with_one_line_that_says_what_to_fix(
    node: RabbitNode,
    certs: Certificates,
    case: Callable[[RabbitNode, Certificates], Bad],
    transport: str,
) -> None:
    case(node, certs).check(transport)


def test_expired_server_certificate(node: RabbitNode, certs: Certificates) -> None:
    node.serve_certificate(certs.expired_server, certs.expired_server_key)
    bad = Bad(
        tls_url(node, password=URL_PASSWORD),
        good_settings(certs),
        TLSError,
        f"cannot connect to amqps://guest:***@localhost:{node.tls_port}/: the broker's "
        f"certificate at localhost:{node.tls_port} (subject 'localhost') expired on {DATE}: "
        f"renew it on the broker (its ssl_options.certfile)",
    )
    try:
        for transport in TRANSPORTS:
            bad.check(transport)
    finally:
        node.serve_certificate(certs.server, certs.server_key)


def test_worker_startup_error_is_one_line(
    node: RabbitNode, certs: Certificates, tmp_path: Path
) -> None:
    """A worker that does not trust the broker's CA exits at once (no retries) and says why."""
    env = {
        **cli_env(tls_url(node, password=URL_PASSWORD)),
        "AMQPTASKS_BROKER_TLS_CA_FILE": str(certs.other_ca),
        "AMQPTASKS_BROKER_TLS_CERT_FILE": str(certs.client),
        "AMQPTASKS_BROKER_TLS_KEY_FILE": str(certs.client_key_encrypted),
        "AMQPTASKS_BROKER_TLS_KEY_PASSWORD": certs.key_password,
    }
    proc = subprocess.run(
        worker_command("-Q", "tls-unused", "-l", "debug", app=CORE_APP),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert (
        "TLSError: cannot connect to amqps://guest:***@localhost:"
        f"{node.tls_port}/: the broker's certificate at localhost:{node.tls_port} (issuer "
        f"'amqptasks test CA') is signed by a CA not in broker_tls_ca_file '{certs.other_ca}'"
    ) in output, output
    assert "retrying" not in output
    assert URL_PASSWORD not in output
    assert certs.key_password not in output
