"""TLS for both transports: the ``SSLContext`` a connection uses, built from its options.

Verification and host name checks are on unless ``broker_tls_verify`` is False.
A client certificate's key that is encrypted needs ``broker_tls_key_password``:
OpenSSL is never left to prompt for it on a terminal.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import TLSError

if TYPE_CHECKING:
    from amqptasks.config import BrokerURL
    from amqptasks.config.tls_options import TLSOptions


def _no_password() -> bytes:
    """Answer OpenSSL's password prompt for a key without a password setting: no password."""
    return b""


class _NamedContext(ssl.SSLContext):
    """A client context that checks the broker's certificate against a set name.

    asyncio (aio-pika) hands the URL's host to ``wrap_bio``; with
    ``broker_tls_server_hostname`` the certificate must carry that name instead.
    """

    expected_name: str | None = None

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        if self.expected_name:
            kwargs["server_hostname"] = self.expected_name
        return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        if self.expected_name:
            kwargs["server_hostname"] = self.expected_name
        return super().wrap_socket(*args, **kwargs)


def ssl_context(options: TLSOptions) -> ssl.SSLContext:
    """A client context: the CA file (or the system's CAs), the client certificate, checks.

    Raises:
        TLSError: a file that cannot be loaded, with the setting to fix (never the password).
    """
    context = _NamedContext(ssl.PROTOCOL_TLS_CLIENT)
    context.expected_name = options.server_hostname
    try:
        if options.ca_file:
            context.load_verify_locations(cafile=options.ca_file)
        else:
            context.load_default_certs()
    except (ssl.SSLError, OSError) as exc:
        raise TLSError(
            f"broker_tls_ca_file {options.ca_file!r} holds no usable PEM CA certificate "
            f"({getattr(exc, 'reason', None) or exc}): point it at the CA that signed the "
            f"broker's certificate"
        ) from None
    if not options.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if options.cert_file:
        password = options.key_password if options.key_password else _no_password
        try:
            context.load_cert_chain(options.cert_file, options.key_file, password=password)
        except (ssl.SSLError, OSError) as exc:
            raise TLSError(_load_error(options, exc)) from None
    return context


def _load_error(options: TLSOptions, exc: BaseException) -> str:
    key = options.key_file or options.cert_file
    try:
        encrypted = "ENCRYPTED" in Path(str(key)).read_text(errors="replace")
    except OSError:
        encrypted = False
    if encrypted and not options.key_password:
        return (
            f"client key {key!r} is encrypted: set broker_tls_key_password "
            f"(AMQPTASKS_BROKER_TLS_KEY_PASSWORD)"
        )
    if encrypted:
        return f"client key {key!r}: broker_tls_key_password does not decrypt it"
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return (
        f"cannot load client certificate {options.cert_file!r} with key {key!r} ({reason}): "
        f"are both PEM files, and does the key belong to the certificate?"
    )


def server_hostname(url: BrokerURL) -> str:
    """The name the broker's certificate must carry: the override, else the URL's host."""
    options = url.tls
    return (options.server_hostname if options else None) or url.host
