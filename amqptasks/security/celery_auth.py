"""Celery's ``auth`` serializer, on the wire (pure): x509-signed bodies.

A Celery app with ``task_serializer="auth"`` sends ``content_type
application/data`` and a body that is the base64 of five fields joined by
``\\x00\\x01``: base64 of the signer's id (the certificate's issuer values and
serial number), base64 of the signature, the inner content type, the inner
content encoding, and the inner body (the serialized ``[args, kwargs, embed]``).
The signature is RSA-PSS (MGF1, maximum salt) over the inner body with
``security_digest``. Only the body is signed: headers (task name, eta, ...) are
not covered, and nothing stops a replay - amqptasks' own signature does both.

Mirrors ``celery/security/serialization.py`` and ``certificate.py`` (Celery 5).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import glob
import os
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from amqptasks.exceptions import BadSignature, ConfigError
from amqptasks.security.keys import read_source

__all__ = ["CONTENT_ENCODING", "CONTENT_TYPE", "CeleryAuthSigner", "CeleryCertStore", "cert_id"]

CONTENT_TYPE = "application/data"
CONTENT_ENCODING = "utf-8"
_SEP = b"\x00\x01"


def _digest(name: str) -> hashes.HashAlgorithm:
    algorithm = getattr(hashes, name.upper(), None)
    if not isinstance(algorithm, type) or not issubclass(algorithm, hashes.HashAlgorithm):
        raise ConfigError(f"security_digest {name!r} is not a hash (sha256, sha512, ...)")
    return algorithm()


def _padding(digest: hashes.HashAlgorithm) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.MAX_LENGTH)


def cert_id(cert: x509.Certificate) -> str:
    """Celery's id of a certificate: its issuer's values and its serial number."""
    issuer = " ".join(str(attribute.value) for attribute in cert.issuer)
    return f"{issuer} {cert.serial_number}"


def _read(path: str, what: str) -> bytes:
    material = read_source(f"file:{path}", what)
    assert isinstance(material, bytes)
    return material


def _load_cert(data: bytes, where: str) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ConfigError(f"{where}: not a PEM x509 certificate") from None
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise ConfigError(f"{where}: Celery's auth serializer supports RSA certificates only")
    return cert


def _expired(cert: x509.Certificate) -> bool:
    return dt.datetime.now(dt.timezone.utc) >= cert.not_valid_after_utc


class CeleryAuthSigner:
    """Wraps bodies as Celery's ``auth`` serializer does (``security_key`` + certificate)."""

    def __init__(self, key_path: str, cert_path: str, password: str | None, digest: str) -> None:
        try:
            key = serialization.load_pem_private_key(
                _read(key_path, "security_key"), password=password.encode() if password else None
            )
        except (ValueError, TypeError):
            raise ConfigError(
                f"security_key ({key_path}): not a readable PEM private key (or a wrong "
                "security_key_password)"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(f"security_key ({key_path}): Celery's auth needs an RSA key")
        self._key = key
        self._signer = base64.b64encode(
            cert_id(_load_cert(_read(cert_path, "security_certificate"), cert_path)).encode()
        )
        self._digest = _digest(digest)

    def wrap(self, body: bytes, content_type: str, content_encoding: str) -> bytes:
        """The ``application/data`` body Celery's ``auth`` deserializer accepts."""
        signature = self._key.sign(body, _padding(self._digest), self._digest)
        fields = _SEP.join(
            [
                self._signer,
                base64.b64encode(signature),
                content_type.encode(),
                content_encoding.encode(),
                body,
            ]
        )
        return base64.b64encode(fields)


class CeleryCertStore:
    """Trusted Celery signers (``security_cert_store``: a directory, file or glob)."""

    def __init__(self, path: str, digest: str) -> None:
        pattern = os.path.join(path, "*") if os.path.isdir(path) else path
        self._certs: dict[str, x509.Certificate] = {}
        for name in sorted(glob.glob(pattern)):
            cert = _load_cert(_read(name, "security_cert_store"), name)
            self._certs[cert_id(cert)] = cert
        if not self._certs:
            raise ConfigError(f"security_cert_store ({path}): no certificate found there")
        self._digest = _digest(digest)

    def open(self, payload: bytes) -> tuple[bytes, str, str]:
        """``(body, content_type, content_encoding)`` of a Celery ``auth`` body.

        Raises:
            BadSignature: malformed, an unknown or expired signer, or a wrong signature.
        """
        try:
            fields = base64.b64decode(payload).split(_SEP, 4)
            signer = base64.b64decode(fields[0]).decode("utf-8")
            signature = base64.b64decode(fields[1])
            content_type, content_encoding = fields[2].decode(), fields[3].decode()
            body = fields[4]
        except (binascii.Error, ValueError, IndexError):
            raise BadSignature("not a Celery auth body (application/data)") from None
        cert = self._certs.get(signer)
        if cert is None:
            raise BadSignature(f"signed by an unknown Celery certificate {signer!r}")
        if _expired(cert):
            raise BadSignature(f"signed by an expired Celery certificate {signer!r}")
        public: Any = cert.public_key()
        try:
            public.verify(signature, body, _padding(self._digest), self._digest)
        except InvalidSignature:
            raise BadSignature(
                f"Celery auth signature by {signer!r} does not match the body: it was altered"
            ) from None
        return body, content_type, content_encoding
