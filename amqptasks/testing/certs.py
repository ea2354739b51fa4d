"""Certificates for a TLS test node, made with ``cryptography``: a CA and what it signs.

:func:`make_certificates` writes, into one directory, what a TLS
:class:`~amqptasks.testing.node.RabbitNode` serves (``ca.pem``, ``server.pem``,
``server.key``: a server certificate for ``localhost``) and what
clients present, good and bad::

    >>> certs = make_certificates(tmp_path)  # doctest: +SKIP
    >>> node = RabbitNode(tls_dir=certs.directory).start()  # doctest: +SKIP

Keys are EC P-256 (fast to make); nothing here is fit for production.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Certificates", "make_certificates"]

_Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Certificates:
    """Paths of the PEM files :func:`make_certificates` wrote (``*_key``: their keys)."""

    directory: Path
    #: The CA the node trusts and signs with.
    ca: Path
    #: The node's certificate (``localhost``, ``127.0.0.1``) and key.
    server: Path
    server_key: Path
    #: A client certificate for ``client_name``, signed by the CA.
    client: Path
    client_key: Path
    #: ``client_key`` encrypted with ``key_password``.
    client_key_encrypted: Path
    key_password: str
    #: A client certificate signed by the CA that expired a day ago.
    expired_client: Path
    expired_client_key: Path
    #: A client certificate signed by the CA for ``unmapped_name``, a user the node lacks.
    unmapped_client: Path
    unmapped_client_key: Path
    #: A client certificate signed by another CA (``other_ca``), which the node does not trust.
    stranger_client: Path
    stranger_client_key: Path
    other_ca: Path
    #: A server certificate signed by the CA that expired a day ago.
    expired_server: Path
    expired_server_key: Path
    #: The client certificate's common name (the user EXTERNAL logs in as).
    client_name: str
    #: The common name of ``unmapped_client``.
    unmapped_name: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> _Key:
    return ec.generate_private_key(ec.SECP256R1())


def _certificate(
    subject: str,
    key: _Key,
    issuer: tuple[x509.Certificate, _Key] | None,
    *,
    ca: bool = False,
    server_names: tuple[str, ...] = (),
    expired: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = (
        (now - datetime.timedelta(days=30), now - datetime.timedelta(days=1))
        if expired
        else (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=30))
    )
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), False
        )
    if server_names:
        alternative: list[x509.GeneralName] = []
        for name in server_names:
            try:
                alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternative.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alternative), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _write(
    directory: Path, stem: str, certificate: x509.Certificate, key: _Key
) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def make_certificates(
    directory: str | Path,
    *,
    client_name: str = "amqptasks-client",
    unmapped_name: str = "amqptasks-unmapped",
    server_names: tuple[str, ...] = ("localhost",),
    key_password: str = "test-key-password",
) -> Certificates:
    """Write a CA, a server certificate, and good and bad client certificates.

    The server certificate names ``server_names`` only (default ``localhost``, so
    ``amqps://...@127.0.0.1`` fails the host name check: a wrong host name case).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    ca_key, other_key = _key(), _key()
    ca = _certificate("amqptasks test CA", ca_key, None, ca=True)
    other = _certificate("amqptasks other CA", other_key, None, ca=True)
    (out / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (out / "other-ca.pem").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    made: dict[str, tuple[Path, Path]] = {}
    wanted: dict[str, tuple[str, tuple[x509.Certificate, _Key], tuple[str, ...], bool]] = {
        "server": (server_names[0], (ca, ca_key), server_names, False),
        "expired-server": (server_names[0], (ca, ca_key), server_names, True),
        "client": (client_name, (ca, ca_key), (), False),
        "expired-client": (client_name, (ca, ca_key), (), True),
        "unmapped-client": (unmapped_name, (ca, ca_key), (), False),
        "stranger-client": (client_name, (other, other_key), (), False),
    }
    keys: dict[str, _Key] = {}
    for stem, (subject, issuer, names, expired) in wanted.items():
        keys[stem] = _key()
        certificate = _certificate(subject, keys[stem], issuer, server_names=names, expired=expired)
        made[stem] = _write(out, stem, certificate, keys[stem])
    encrypted = out / "client-encrypted.key"
    encrypted.write_bytes(
        keys["client"].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(key_password.encode()),
        )
    )
    encrypted.chmod(0o600)
    return Certificates(
        directory=out,
        ca=out / "ca.pem",
        server=made["server"][0],
        server_key=made["server"][1],
        client=made["client"][0],
        client_key=made["client"][1],
        client_key_encrypted=encrypted,
        key_password=key_password,
        expired_client=made["expired-client"][0],
        expired_client_key=made["expired-client"][1],
        unmapped_client=made["unmapped-client"][0],
        unmapped_client_key=made["unmapped-client"][1],
        stranger_client=made["stranger-client"][0],
        stranger_client_key=made["stranger-client"][1],
        other_ca=out / "other-ca.pem",
        expired_server=made["expired-server"][0],
        expired_server_key=made["expired-server"][1],
        client_name=client_name,
        unmapped_name=unmapped_name,
    )
