"""TLS failures in one actionable line: what went wrong, and which setting fixes it.

pika and aiormq report a failed handshake as an ``ssl`` error somewhere inside their
own wrappers (or, for plain AMQP sent to a TLS port, as a closed stream). This module
finds it and says which side's certificate failed and why. Where the error alone does
not tell (the names a certificate carries, its issuer, whether a port speaks TLS), it
asks the broker once more with a short, unverified probe: only on this failure path.
Messages carry file paths, host names and certificate names; never a password.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from amqptasks.exceptions import AuthenticationFailed, TLSError
from amqptasks.transport._causes import exception_chain

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from cryptography import x509

    from amqptasks.config import BrokerURL
    from amqptasks.exceptions import BrokerError

_T = TypeVar("_T")

#: Seconds a diagnosing probe may take.
PROBE_TIMEOUT = 2.0

#: OpenSSL verify codes (``X509_V_ERR_*``).
_EXPIRED = 10
_NOT_YET_VALID = 9
_HOSTNAME_MISMATCH = 62
_IP_MISMATCH = 64
_UNKNOWN_ISSUER = {2, 18, 19, 20, 21}

_SET_CA = (
    "set broker_tls_ca_file (AMQPTASKS_BROKER_TLS_CA_FILE) to the CA certificate that signed it"
)
_SET_HOSTNAME = (
    "connect with a host name it names, or set broker_tls_server_hostname "
    "(AMQPTASKS_BROKER_TLS_SERVER_HOSTNAME) to one of them"
)


def diagnose(exc: BaseException, url: BrokerURL) -> BrokerError | None:
    """The TLS or EXTERNAL-login error ``exc`` stands for, or None if it is neither."""
    chain = list(exception_chain(exc))
    text = " | ".join(f"{type(item).__name__}: {item}" for item in chain)
    where = f"cannot connect to {url.redacted()}"
    if url.external_login and _auth_failure(text):
        return _external_refused(text, url, where)
    if not url.ssl:
        if _refused_or_unresolved(chain) or _auth_failure(text) or _amqp_answered(text):
            return None
        if _speaks_tls(url.host, url.port):
            return TLSError(
                f"{where}: port {url.port} speaks TLS, not plain AMQP: use amqps:// for it "
                f"(or the broker's plain AMQP port, usually 5672)"
            )
        return None
    verify = next((e for e in chain if isinstance(e, ssl.SSLCertVerificationError)), None)
    if verify is not None:
        return TLSError(f"{where}: {_server_certificate_problem(verify, url)}")
    upper = text.upper()
    if any(
        mark in upper
        for mark in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG")
    ):
        return TLSError(
            f"{where}: port {url.port} speaks plain AMQP, not TLS: use amqp:// for it "
            f"(or the broker's TLS port, usually 5671)"
        )
    refused = _client_certificate_problem(upper, url)
    if refused is None and _reset(chain):
        # TLS 1.3: the broker judges our certificate after the handshake, and its alert
        # can be lost to the reset of the connection; ask again, listening only.
        refused = _client_certificate_problem(_broker_alert(url).upper(), url)
    if refused is not None:
        return TLSError(f"{where}: {refused}")
    ssl_error = next((e for e in chain if isinstance(e, ssl.SSLError)), None)
    if ssl_error is not None:
        reason = ssl_error.reason or ssl_error.strerror or type(ssl_error).__name__
        return TLSError(f"{where}: TLS handshake failed ({reason})")
    return None


def _refused_or_unresolved(chain: list[BaseException]) -> bool:
    return any(isinstance(e, ConnectionRefusedError | socket.gaierror) for e in chain)


def _amqp_answered(text: str) -> bool:
    """The failure came from an AMQP peer, or from none in time: no TLS port to suspect."""
    lowered = text.lower()
    return "not_allowed" in lowered or "connection.close" in lowered or "time" in lowered


def _reset(chain: list[BaseException]) -> bool:
    return any(isinstance(e, ConnectionResetError | ssl.SSLEOFError) for e in chain) or any(
        "reset by peer" in str(e) or "EOF occurred" in str(e) for e in chain
    )


def _auth_failure(text: str) -> bool:
    return "ACCESS_REFUSED" in text or "AuthenticationError" in text


def _external_refused(text: str, url: BrokerURL, where: str) -> AuthenticationFailed:
    cert = url.tls.cert_file if url.tls else None
    if "ACCESS_REFUSED" not in text:
        return AuthenticationFailed(
            f"{where}: the broker does not offer the EXTERNAL login: enable its "
            f"rabbitmq_auth_mechanism_ssl plugin and add EXTERNAL to its auth_mechanisms"
        )
    user = f"user {certificate_user(url)!r} (the common name of {cert!r})"
    return AuthenticationFailed(
        f"{where}: the broker refused the EXTERNAL login of {user}: create that user "
        f"(rabbitmqctl add_user, set_permissions) or check the broker's ssl_cert_login_from"
    )


def certificate_user(url: BrokerURL) -> str:
    """The user an EXTERNAL login maps to, as far as we can tell: the certificate's CN."""
    certificate = _load_certificate(url.tls.cert_file if url.tls else None)
    return _common_name(certificate.subject) if certificate is not None else "?"


def _server_certificate_problem(error: ssl.SSLCertVerificationError, url: BrokerURL) -> str:
    from amqptasks.transport.tls import server_hostname

    code = error.verify_code
    peer = _peer_certificate(url)
    address = f"{url.host}:{url.port}"
    if code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
        names = ", ".join(repr(name) for name in _names(peer)) if peer else "other names"
        return (
            f"the broker's certificate at {address} is for {names}, not "
            f"{server_hostname(url)!r}: {_SET_HOSTNAME}"
        )
    subject = f" (subject {_common_name(peer.subject)!r})" if peer else ""
    if code == _EXPIRED:
        until = f" on {_when(peer.not_valid_after_utc)}" if peer else ""
        return (
            f"the broker's certificate at {address}{subject} expired{until}: renew it on "
            f"the broker (its ssl_options.certfile)"
        )
    if code == _NOT_YET_VALID:
        since = f" before {_when(peer.not_valid_before_utc)}" if peer else " yet"
        return (
            f"the broker's certificate at {address}{subject} is not valid{since}: check "
            f"the clocks, or the certificate's dates"
        )
    if code in _UNKNOWN_ISSUER:
        issuer = f" (issuer {_common_name(peer.issuer)!r})" if peer else ""
        ca_file = url.tls.ca_file if url.tls else None
        trusted = f"broker_tls_ca_file {ca_file!r}" if ca_file else "the system's CA store"
        return (
            f"the broker's certificate at {address}{issuer} is signed by a CA not in "
            f"{trusted}: {_SET_CA}"
        )
    return (
        f"the broker's certificate at {address}{subject} failed verification "
        f"({error.verify_message}): {_SET_CA}"
    )


def _client_certificate_problem(upper: str, url: BrokerURL) -> str | None:
    """What the broker's TLS alert says about our client certificate, if it is about it."""
    cert = url.tls.cert_file if url.tls else None
    address = f"{url.host}:{url.port}"
    if "CERTIFICATE_REQUIRED" in upper or (not cert and "HANDSHAKE_FAILURE" in upper):
        return (
            f"the broker at {address} requires a client certificate: set "
            f"broker_tls_cert_file and broker_tls_key_file"
        )
    if "ALERT_CERTIFICATE_EXPIRED" in upper:
        certificate = _load_certificate(cert)
        until = f" on {_when(certificate.not_valid_after_utc)}" if certificate else ""
        return (
            f"the broker at {address} refused the client certificate {cert!r}: it expired"
            f"{until}: renew it (broker_tls_cert_file)"
        )
    if any(
        mark in upper
        for mark in ("ALERT_UNKNOWN_CA", "ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_UNKNOWN")
    ):
        certificate = _load_certificate(cert)
        issuer = f" (issuer {_common_name(certificate.issuer)!r})" if certificate else ""
        return (
            f"the broker at {address} refused the client certificate {cert!r}{issuer}: "
            f"it does not trust its issuer: use a certificate signed by a CA in the "
            f"broker's ssl_options.cacertfile (broker_tls_cert_file)"
        )
    return None


# -- certificates ---------------------------------------------------------------------------


def _load_certificate(path: str | None) -> x509.Certificate | None:
    if not path:
        return None
    from cryptography import x509

    with contextlib.suppress(OSError, ValueError):
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    return None


def _common_name(name: x509.Name) -> str:
    from cryptography.x509.oid import NameOID

    found = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(found[0].value) if found else name.rfc4514_string()


def _names(certificate: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses a certificate is valid for (else its common name)."""
    from cryptography import x509

    try:
        alternative = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        return [_common_name(certificate.subject)]
    dns = alternative.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in alternative.get_values_for_type(x509.IPAddress)]
    return [*dns, *ips] or [_common_name(certificate.subject)]


def _when(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# -- probes ---------------------------------------------------------------------------------


def _probe_context(url: BrokerURL) -> ssl.SSLContext:
    """An unverified context with our client certificate: to read what the broker shows."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    options = url.tls
    if options is not None and options.cert_file:
        with contextlib.suppress(ssl.SSLError, OSError):
            context.load_cert_chain(
                options.cert_file, options.key_file, password=options.key_password or b""
            )
    return context


def _peer_certificate(url: BrokerURL) -> x509.Certificate | None:
    """The broker's certificate, read without verifying it (None if that fails too)."""
    from cryptography import x509

    from amqptasks.transport.tls import server_hostname

    context = _probe_context(url)
    try:
        with _handshaken(url.host, url.port, context, server_hostname(url)) as probe:
            der = probe.tls.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return None
    return x509.load_der_x509_certificate(der) if der else None


def _broker_alert(url: BrokerURL) -> str:
    """The TLS alert the broker sends after a handshake with our own settings ('' if none)."""
    from amqptasks.config.tls_options import TLSOptions
    from amqptasks.transport.tls import server_hostname, ssl_context

    try:
        context = ssl_context(url.tls or TLSOptions())
        with _handshaken(url.host, url.port, context, server_hostname(url)) as probe:
            probe.run(lambda: probe.tls.read(1))  # sending nothing: no alert is lost to a reset
    except ssl.SSLError as exc:
        return str(exc)
    except (OSError, ValueError, TLSError):
        return ""
    return ""


def _speaks_tls(host: str, port: int) -> bool:
    """Whether ``host:port`` answers a TLS handshake (a TLS port reached with amqp://)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with _handshaken(host, port, context, None):
            return True
    except ssl.SSLError as exc:
        # The broker asked for a client certificate and we sent none: it does speak TLS.
        return "ALERT" in str(exc).upper() and "VERSION" not in str(exc).upper()
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _handshaken(
    host: str, port: int, context: ssl.SSLContext, hostname: str | None
) -> Iterator[_Probe]:
    """A :class:`_Probe` to ``host:port`` whose TLS handshake is done; closed after."""
    with socket.create_connection((host, port), timeout=PROBE_TIMEOUT) as raw:
        probe = _Probe(raw, context, hostname)
        probe.run(probe.tls.do_handshake)
        yield probe


class _Probe:
    """A TLS client over a plain socket, through memory buffers (:class:`ssl.MemoryBIO`).

    Not ``SSLContext.wrap_socket``: when the peer resets the connection as the socket
    is wrapped, ``wrap_socket`` raises after it took the socket's descriptor over, and
    the SSL socket it made is left unclosed. Here the plain socket stays the only owner.
    """

    def __init__(self, raw: socket.socket, context: ssl.SSLContext, hostname: str | None) -> None:
        self.raw = raw
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=hostname)

    def run(self, step: Callable[[], _T]) -> _T:
        """``step`` (a handshake, a read) done, moving its bytes over the socket.

        Raises:
            ssl.SSLError: the broker's alert, or a certificate it sent that fails.
            OSError: the connection closed or timed out first.
        """
        while True:
            try:
                result = step()
            except ssl.SSLWantReadError:
                self._send()
                data = self.raw.recv(65536)
                if not data:
                    raise ConnectionResetError("the broker closed the connection") from None
                self.incoming.write(data)
            else:
                self._send()
                return result

    def _send(self) -> None:
        data = self.outgoing.read()
        if data:
            self.raw.sendall(data)
