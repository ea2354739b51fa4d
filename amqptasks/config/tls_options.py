"""What a connection needs to speak TLS: the value the transports build an ``SSLContext`` from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TLSOptions:
    """CA, client certificate and verification of one broker connection.

    Made by :class:`~amqptasks.config.tls.TLSSettings` from the ``broker_tls_*``
    settings. The key password is left out of ``repr()`` and never shown in errors.
    """

    #: PEM file of the CA(s) to trust; None: the system's CAs.
    ca_file: str | None = None
    #: PEM file of the client certificate.
    cert_file: str | None = None
    #: PEM file of its private key (None: the key is in ``cert_file``).
    key_file: str | None = None
    #: Password of an encrypted private key.
    key_password: str | None = field(default=None, repr=False)
    #: Verify the broker's certificate chain and host name.
    verify: bool = True
    #: The name the broker's certificate must carry (default: the URL's host).
    server_hostname: str | None = None
