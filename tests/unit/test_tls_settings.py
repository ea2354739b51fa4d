"""TLS settings: what they accept and refuse, the SSLContext they build, and no password shown."""

from __future__ import annotations

import ssl
import uuid
from typing import TYPE_CHECKING, Any

import click
import pytest
from click.testing import CliRunner

from amqptasks import App, TLSError
from amqptasks.config import Settings
from amqptasks.config.tls_options import TLSOptions
from amqptasks.exceptions import ConfigError
from amqptasks.testing.certs import Certificates, make_certificates
from amqptasks.transport import _pika
from amqptasks.transport.tls import ssl_context

if TYPE_CHECKING:
    from pathlib import Path

TLS_URL = "amqps://user:url-pw@broker.example:5671//"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def client(certs: Certificates, **more: Any) -> dict[str, Any]:
    return {
        "broker_tls_ca_file": str(certs.ca),
        "broker_tls_cert_file": str(certs.client),
        "broker_tls_key_file": str(certs.client_key),
        **more,
    }


def test_amqps_verifies_by_default_against_the_system_cas() -> None:
    url = Settings.build({"broker_url": TLS_URL}, environ={}).broker
    assert url.ssl and url.tls == TLSOptions()
    context = ssl_context(url.tls)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_plain_url_has_no_tls() -> None:
    url = Settings.build({"broker_url": "amqp://localhost//"}, environ={}).broker
    assert not url.ssl and url.tls is None and url.login_method == "PLAIN"


def test_settings_from_code_and_environment(certs: Certificates) -> None:
    environ = {
        "AMQPTASKS_BROKER_TLS_CA_FILE": str(certs.ca),
        "AMQPTASKS_BROKER_TLS_CERT_FILE": str(certs.client),
        "AMQPTASKS_BROKER_TLS_KEY_FILE": str(certs.client_key_encrypted),
        "AMQPTASKS_BROKER_TLS_KEY_PASSWORD": certs.key_password,
        "AMQPTASKS_BROKER_TLS_SERVER_HOSTNAME": "rabbit.internal",
        "AMQPTASKS_BROKER_LOGIN_METHOD": "external",
    }
    url = Settings.build({"broker_url": TLS_URL}, environ=environ).broker
    assert url.tls == TLSOptions(
        ca_file=str(certs.ca),
        cert_file=str(certs.client),
        key_file=str(certs.client_key_encrypted),
        key_password=certs.key_password,
        server_hostname="rabbit.internal",
    )
    assert url.external_login
    # The encrypted key loads with its password; the context checks the set name.
    context = ssl_context(url.tls)
    assert getattr(context, "expected_name", None) == "rabbit.internal"


def test_no_password_in_repr_or_str(certs: Certificates) -> None:
    app = App(
        "t",
        broker_url=TLS_URL,
        **client(
            certs,
            broker_tls_key_file=str(certs.client_key_encrypted),
            broker_tls_key_password=certs.key_password,
        ),
    )
    url = app.settings.broker
    for text in (repr(app.settings), repr(url), str(url), repr(url.tls)):
        assert certs.key_password not in text
        assert "url-pw" not in text


def test_verify_off_turns_off_chain_and_host_name_checks() -> None:
    url = Settings.build({"broker_url": TLS_URL, "broker_tls_verify": False}, environ={}).broker
    assert url.tls is not None
    context = ssl_context(url.tls)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname


def test_celery_broker_use_ssl_dict(certs: Certificates) -> None:
    use_ssl = {
        "ca_certs": str(certs.ca),
        "certfile": str(certs.client),
        "keyfile": str(certs.client_key),
        "cert_reqs": ssl.CERT_REQUIRED,
    }
    url = Settings.build({"broker_url": TLS_URL, "broker_use_ssl": use_ssl}, environ={}).broker
    assert url.tls == TLSOptions(
        ca_file=str(certs.ca), cert_file=str(certs.client), key_file=str(certs.client_key)
    )
    no_verify = {"cert_reqs": ssl.CERT_NONE}
    url = Settings.build({"broker_url": TLS_URL, "broker_use_ssl": no_verify}, environ={}).broker
    assert url.tls is not None and url.tls.verify is False


def test_celery_broker_use_ssl_true_turns_tls_on_for_amqp_urls() -> None:
    settings = Settings.build(
        {"broker_url": "amqp://localhost:5671//", "broker_use_ssl": True}, environ={}
    )
    assert settings.broker.ssl
    pika_parameters = _pika.connection_parameters(settings.broker, "t")
    assert pika_parameters.ssl_options is not None
    assert pika_parameters.ssl_options.server_hostname == "localhost"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"broker_url": "amqp://localhost//", "broker_tls_verify": False},
            "TLS settings are set but the broker URL amqp://guest:***@localhost:5672/ is "
            "amqp://: use amqps:// (the broker's TLS port, usually 5671), or remove the "
            "broker_tls_* settings",
        ),
        (
            {"broker_url": TLS_URL, "broker_login_method": "EXTERNAL"},
            "broker_login_method EXTERNAL needs an amqps:// URL and a client certificate: "
            "set broker_tls_cert_file and broker_tls_key_file",
        ),
        (
            {"broker_url": TLS_URL, "broker_login_method": "KERBEROS"},
            "broker_login_method must be one of PLAIN, AMQPLAIN, EXTERNAL, got 'KERBEROS'",
        ),
        (
            {"broker_url": TLS_URL, "broker_tls_ca_file": "/nonexistent/ca.pem"},
            "broker_tls_ca_file: no such file '/nonexistent/ca.pem'",
        ),
        (
            {"broker_url": TLS_URL, "broker_use_ssl": {"ssl_version": 2}},
            "broker_use_ssl: unknown key 'ssl_version' (known: ca_certs, cert_reqs, certfile, "
            "keyfile, server_hostname)",
        ),
        (
            {"broker_url": TLS_URL, "broker_tls_key_password": "pw-never-shown"},
            "broker_tls_key_password is set without a client certificate: set "
            "broker_tls_cert_file and broker_tls_key_file",
        ),
    ],
)
def test_bad_settings_say_what_to_fix(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.build(given, environ={})
    assert str(caught.value) == message
    assert "pw-never-shown" not in str(caught.value)
    assert "url-pw" not in str(caught.value)


def test_key_without_certificate(certs: Certificates) -> None:
    with pytest.raises(ConfigError, match="broker_tls_key_file is set without"):
        Settings.build(
            {"broker_url": TLS_URL, "broker_tls_key_file": str(certs.client_key)}, environ={}
        )


def test_encrypted_key_without_its_password(certs: Certificates) -> None:
    options = TLSOptions(cert_file=str(certs.client), key_file=str(certs.client_key_encrypted))
    with pytest.raises(TLSError) as caught:
        ssl_context(options)
    assert str(caught.value) == (
        f"client key '{certs.client_key_encrypted}' is encrypted: set broker_tls_key_password "
        f"(AMQPTASKS_BROKER_TLS_KEY_PASSWORD)"
    )


def test_wrong_key_password_is_not_shown(certs: Certificates) -> None:
    options = TLSOptions(
        cert_file=str(certs.client),
        key_file=str(certs.client_key_encrypted),
        key_password="wrong-pw-1234",
    )
    with pytest.raises(TLSError) as caught:
        ssl_context(options)
    assert str(caught.value) == (
        f"client key '{certs.client_key_encrypted}': broker_tls_key_password does not decrypt it"
    )
    assert "wrong-pw-1234" not in repr(caught.value)


def test_key_of_another_certificate(certs: Certificates) -> None:
    options = TLSOptions(cert_file=str(certs.client), key_file=str(certs.stranger_client_key))
    with pytest.raises(TLSError, match=r"does the key belong to the certificate\?"):
        ssl_context(options)


def test_ca_file_that_is_not_a_certificate(certs: Certificates, tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    with pytest.raises(TLSError, match=r"holds no usable PEM CA certificate"):
        ssl_context(TLSOptions(ca_file=str(bogus)))


def test_cli_options_reach_the_settings(
    certs: Certificates, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``--broker-tls-*`` set the settings' environment variables, as ``-b`` does."""
    from amqptasks.cli._options import shared_options

    seen: dict[str, Any] = {}

    @shared_options
    def command(app: App) -> None:
        seen["url"] = app.settings.broker

    cli = click.command()(command)
    for name in (
        "AMQPTASKS_BROKER_TLS_CA_FILE",
        "AMQPTASKS_BROKER_TLS_CERT_FILE",
        "AMQPTASKS_BROKER_TLS_KEY_FILE",
        "AMQPTASKS_BROKER_LOGIN_METHOD",
    ):
        monkeypatch.setenv(name, "")  # so that the options' values are undone after the test
        monkeypatch.delenv(name)
    monkeypatch.setenv("AMQPTASKS_BROKER_URL", "amqps://localhost//")
    module = f"tls_cli_app_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text("from amqptasks import App\napp = App('cli-tls')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(
        cli,
        [
            *("-A", f"{module}:app"),
            *("--broker-tls-ca-file", str(certs.ca)),
            *("--broker-tls-cert-file", str(certs.client)),
            *("--broker-tls-key-file", str(certs.client_key)),
            *("--broker-login-method", "EXTERNAL"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    url = seen["url"]
    assert url.tls.cert_file == str(certs.client) and url.external_login
