"""TLS to the broker: CA, client certificate, verification, and the EXTERNAL login.

``amqps://`` URLs verify the broker's certificate against ``broker_tls_ca_file``
(or the system's CAs) and check its host name; a client certificate
(``broker_tls_cert_file`` + ``broker_tls_key_file``) lets the broker know who
connects, and ``broker_login_method="EXTERNAL"`` logs in as the user its
common name maps to (RabbitMQ's ``rabbitmq_auth_mechanism_ssl`` plugin).
Celery's ``broker_use_ssl`` (``True`` or a dict of ``ssl`` keywords) is read too.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from amqptasks.config._parse import optional_str, parse_bool
from amqptasks.config.broker import BrokerSettings, BrokerURL
from amqptasks.config.tls_options import TLSOptions
from amqptasks.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

#: What ``broker_login_method`` accepts. AMQPLAIN (Celery's default) is a password
#: login like PLAIN, and is sent as PLAIN.
LOGIN_METHODS = ("PLAIN", "AMQPLAIN", "EXTERNAL")

#: Celery's ``broker_use_ssl`` keys -> our settings.
_CELERY_KEYS = {
    "ca_certs": "broker_tls_ca_file",
    "certfile": "broker_tls_cert_file",
    "keyfile": "broker_tls_key_file",
    "server_hostname": "broker_tls_server_hostname",
    "cert_reqs": "broker_tls_verify",
}


def _verify_from_cert_reqs(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (ssl.CERT_NONE, "CERT_NONE", "none"):
        return False
    if value in (ssl.CERT_REQUIRED, ssl.CERT_OPTIONAL, "CERT_REQUIRED", "CERT_OPTIONAL"):
        return True
    raise ConfigError(
        f"broker_use_ssl['cert_reqs'] must be ssl.CERT_NONE or ssl.CERT_REQUIRED, got {value!r}"
    )


@dataclass(frozen=True)
class TLSSettings(BrokerSettings):
    """TLS options of the broker connection (its URL comes from :class:`BrokerSettings`)."""

    #: PEM file of the CA(s) that signed the broker's certificate; None: the system's CAs.
    broker_tls_ca_file: str | None = None
    #: PEM file of the client certificate (for brokers with ``verify_peer`` and EXTERNAL).
    broker_tls_cert_file: str | None = None
    #: PEM file of the client certificate's private key.
    broker_tls_key_file: str | None = None
    #: Password of an encrypted private key (never logged, never shown).
    broker_tls_key_password: str | None = field(default=None, repr=False)
    #: Verify the broker's certificate and host name. False only for a throw-away test broker.
    broker_tls_verify: bool = True
    #: The name the broker's certificate must carry, when it is not the URL's host
    #: (a broker reached through an IP address or a tunnel).
    broker_tls_server_hostname: str | None = None
    #: ``PLAIN`` (username and password of the URL), or ``EXTERNAL``: the broker takes the
    #: user from the client certificate (needs TLS and a client certificate).
    broker_login_method: str = "PLAIN"
    #: Celery's setting: True (TLS on, even for amqp://) or a dict with ``ca_certs``,
    #: ``certfile``, ``keyfile``, ``cert_reqs``, ``server_hostname``; the ``broker_tls_*``
    #: settings win over it.
    broker_use_ssl: bool | Mapping[str, Any] = False

    ENV_PARSERS: ClassVar[Mapping[str, Callable[[str], Any]]] = {
        "broker_tls_ca_file": optional_str,
        "broker_tls_cert_file": optional_str,
        "broker_tls_key_file": optional_str,
        "broker_tls_key_password": optional_str,
        "broker_tls_verify": parse_bool,
        "broker_tls_server_hostname": optional_str,
        "broker_use_ssl": parse_bool,
    }

    def check(self) -> None:
        """Files exist, a certificate comes with its key, EXTERNAL has TLS and a certificate."""
        options = self.tls_options()
        method = self.broker_login_method
        if not isinstance(method, str) or method.upper() not in LOGIN_METHODS:
            raise ConfigError(
                f"broker_login_method must be one of {', '.join(LOGIN_METHODS)}, got {method!r}"
            )
        url = BrokerURL.parse(self.broker_url)
        if options is not None and not (url.ssl or self.broker_use_ssl):
            raise ConfigError(
                f"TLS settings are set but the broker URL {url.redacted()} is amqp://: "
                f"use amqps:// (the broker's TLS port, usually 5671), or remove the "
                f"broker_tls_* settings"
            )
        if method.upper() == "EXTERNAL" and (options is None or not options.cert_file):
            raise ConfigError(
                "broker_login_method EXTERNAL needs an amqps:// URL and a client certificate: "
                "set broker_tls_cert_file and broker_tls_key_file"
            )

    def tls_options(self) -> TLSOptions | None:
        """The TLS options these settings ask for; None when nothing TLS-specific is set."""
        given: dict[str, Any] = {
            "broker_tls_ca_file": self.broker_tls_ca_file,
            "broker_tls_cert_file": self.broker_tls_cert_file,
            "broker_tls_key_file": self.broker_tls_key_file,
            "broker_tls_server_hostname": self.broker_tls_server_hostname,
        }
        use_ssl = self.broker_use_ssl
        if isinstance(use_ssl, Mapping):
            for key, value in use_ssl.items():
                if key not in _CELERY_KEYS:
                    known = ", ".join(sorted(_CELERY_KEYS))
                    raise ConfigError(f"broker_use_ssl: unknown key {key!r} (known: {known})")
                name = _CELERY_KEYS[key]
                if name == "broker_tls_verify":
                    value = _verify_from_cert_reqs(value)
                if given.get(name) is None:
                    given[name] = value
        elif not isinstance(use_ssl, bool):
            raise ConfigError(f"broker_use_ssl must be True, False or a dict, got {use_ssl!r}")
        verify = self.broker_tls_verify and given.pop("broker_tls_verify", True)
        if not isinstance(verify, bool):
            raise ConfigError(f"broker_tls_verify must be True or False, got {verify!r}")
        if not any(given.values()) and verify and not self.broker_tls_key_password:
            return None
        for name in ("broker_tls_ca_file", "broker_tls_cert_file", "broker_tls_key_file"):
            _check_file(name, given[name])
        cert, key = given["broker_tls_cert_file"], given["broker_tls_key_file"]
        if key and not cert:
            raise ConfigError("broker_tls_key_file is set without broker_tls_cert_file: set both")
        if self.broker_tls_key_password and not key and not cert:
            raise ConfigError(
                "broker_tls_key_password is set without a client certificate: set "
                "broker_tls_cert_file and broker_tls_key_file"
            )
        return TLSOptions(
            ca_file=_str_or_none(given["broker_tls_ca_file"]),
            cert_file=_str_or_none(cert),
            key_file=_str_or_none(key),
            key_password=self.broker_tls_key_password,
            verify=verify,
            server_hostname=given["broker_tls_server_hostname"],
        )

    @property
    def broker(self) -> BrokerURL:
        """The parsed broker URL, with its TLS options and login method."""
        url: BrokerURL = super().broker
        options = self.tls_options()
        if options is None and (url.ssl or self.broker_use_ssl):
            options = TLSOptions()
        login_method = self.broker_login_method.upper()
        # Every node of a cluster URL connects the same way.
        nodes = [replace(node, tls=options, login_method=login_method) for node in url.nodes]
        return replace(nodes[0], alternates=tuple(nodes[1:]))


def _check_file(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str | Path):
        raise ConfigError(f"{name} must be a file path, got {type(value).__name__}")
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"{name}: no such file {str(path)!r}")


def _str_or_none(value: str | Path | None) -> str | None:
    return None if value is None else str(value)
