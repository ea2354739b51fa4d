"""Key material: where it comes from (file, environment, callable) and what it is.

A *source* is ``file:/path``, ``env:VARIABLE``, a callable returning the key, or
(in code) the key itself: ``bytes`` or a :mod:`cryptography` key object. What the
material is decides the algorithm, so a message can never choose it:

- ``-----BEGIN PRIVATE KEY-----`` (PKCS#8 PEM): an Ed25519 private key, which signs;
- ``-----BEGIN PUBLIC KEY-----``: an Ed25519 public key, which only verifies;
- anything else: an HMAC-SHA256 shared secret (at least 16 bytes), which does both.

Errors name the setting, the key id and the source (a path, a variable name),
never the material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from amqptasks.exceptions import ConfigError

__all__ = [
    "ED25519",
    "HMAC_SHA256",
    "SigningKey",
    "VerifyKey",
    "encryption_key",
    "generate_ed25519",
    "generate_encryption_key",
    "generate_hmac_secret",
    "read_source",
    "signing_key",
    "verify_key",
]

ED25519 = "ed25519"
HMAC_SHA256 = "hmac-sha256"
#: The shortest HMAC secret accepted, in bytes.
MIN_SECRET = 16
#: AES-256 keys are this many bytes.
ENCRYPTION_KEY_BYTES = 32


@dataclass(frozen=True)
class VerifyKey:
    """A key that checks signatures made under ``key_id``."""

    key_id: str
    algorithm: str
    _material: Any = field(repr=False)

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``data``."""
        if self.algorithm == HMAC_SHA256:
            expected = hmac.new(self._material, data, hashlib.sha256).digest()
            return hmac.compare_digest(expected, signature)
        try:
            self._material.verify(signature, data)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """The key a process signs with, under ``key_id``."""

    key_id: str
    algorithm: str
    _material: Any = field(repr=False)

    def sign(self, data: bytes) -> bytes:
        """The signature of ``data``."""
        if self.algorithm == HMAC_SHA256:
            return hmac.new(self._material, data, hashlib.sha256).digest()
        signature: bytes = self._material.sign(data)
        return signature

    def verify_key(self) -> VerifyKey:
        """The key that checks this key's signatures (its public half, or the secret)."""
        if self.algorithm == HMAC_SHA256:
            return VerifyKey(self.key_id, HMAC_SHA256, self._material)
        return VerifyKey(self.key_id, ED25519, self._material.public_key())


def _describe(source: Any) -> str:
    if isinstance(source, str):
        return source if source.startswith(("file:", "env:")) else "a string"
    if callable(source):
        return f"callable {getattr(source, '__qualname__', type(source).__name__)}"
    return f"a {type(source).__name__}"


def read_source(source: Any, what: str) -> Any:
    """The material a source gives: bytes, or a key object given in code.

    Raises:
        ConfigError: an unreadable file, an unset variable, a failing callable, or a
            string that is not ``file:``/``env:`` (a key is never written in settings).
    """
    if callable(source) and not isinstance(source, str | bytes):
        try:
            source = source()
        except Exception as exc:
            raise ConfigError(f"{what}: the key callable raised {type(exc).__name__}") from None
    if isinstance(source, str):
        if source.startswith("file:"):
            path = Path(source[len("file:") :]).expanduser()
            try:
                return path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None
        if source.startswith("env:"):
            name = source[len("env:") :]
            value = os.environ.get(name)
            if not value:
                raise ConfigError(f"{what}: environment variable {name} is not set")
            return value.encode()
        raise ConfigError(
            f"{what}: a key source is file:/path, env:VARIABLE, a callable or the key in "
            "code (bytes), not a plain string"
        )
    return source


def _pem_kind(material: bytes) -> str | None:
    head = material.lstrip()[:40]
    if head.startswith(b"-----BEGIN PRIVATE KEY-----"):
        return "private"
    if head.startswith(b"-----BEGIN PUBLIC KEY-----"):
        return "public"
    if head.startswith(b"-----BEGIN"):
        return "other"
    return None


def _secret(material: bytes, what: str) -> bytes:
    secret = material.strip()
    if len(secret) < MIN_SECRET:
        raise ConfigError(f"{what}: an HMAC secret must be at least {MIN_SECRET} bytes")
    return secret


def _material(source: Any, what: str) -> Any:
    material = read_source(source, what)
    if isinstance(material, str):
        material = material.encode()
    if material is None:
        raise ConfigError(f"{what}: the key source gave nothing ({_describe(source)})")
    return material


def signing_key(key_id: str, source: Any, what: str = "security_signing_key") -> SigningKey:
    """The signing key ``source`` gives (Ed25519 private key or HMAC secret).

    Raises:
        ConfigError: unreadable, a public key (it cannot sign), or not a usable key.
    """
    where = f"{what} ({key_id}, {_describe(source)})"
    material = _material(source, where)
    if isinstance(material, Ed25519PrivateKey):
        return SigningKey(key_id, ED25519, material)
    if not isinstance(material, bytes):
        raise ConfigError(f"{where}: expected key bytes or an Ed25519 private key")
    kind = _pem_kind(material)
    if kind == "public":
        raise ConfigError(f"{where}: this is a public key; signing needs the private key")
    if kind == "private":
        return SigningKey(key_id, ED25519, _load_private(material, where))
    if kind == "other":
        raise ConfigError(f"{where}: only Ed25519 keys in PKCS#8 PEM are supported")
    return SigningKey(key_id, HMAC_SHA256, _secret(material, where))


def verify_key(key_id: str, source: Any, what: str = "security_verify_keys") -> VerifyKey:
    """The verify key ``source`` gives (Ed25519 public or private key, or HMAC secret).

    Raises:
        ConfigError: unreadable or not a usable key.
    """
    where = f"{what} ({key_id}, {_describe(source)})"
    material = _material(source, where)
    if isinstance(material, Ed25519PublicKey):
        return VerifyKey(key_id, ED25519, material)
    if isinstance(material, Ed25519PrivateKey):
        return VerifyKey(key_id, ED25519, material.public_key())
    if not isinstance(material, bytes):
        raise ConfigError(f"{where}: expected key bytes or an Ed25519 key")
    kind = _pem_kind(material)
    if kind == "public":
        try:
            public = serialization.load_pem_public_key(material)
        except ValueError:
            raise ConfigError(f"{where}: not a readable PEM public key") from None
        if not isinstance(public, Ed25519PublicKey):
            raise ConfigError(f"{where}: only Ed25519 public keys are supported")
        return VerifyKey(key_id, ED25519, public)
    if kind == "private":
        return VerifyKey(key_id, ED25519, _load_private(material, where).public_key())
    if kind == "other":
        raise ConfigError(f"{where}: only Ed25519 keys in PEM are supported")
    return VerifyKey(key_id, HMAC_SHA256, _secret(material, where))


def _load_private(material: bytes, where: str) -> Ed25519PrivateKey:
    try:
        private = serialization.load_pem_private_key(material, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{where}: not a readable unencrypted PEM private key") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(f"{where}: only Ed25519 private keys are supported")
    return private


def encryption_key(key_id: str, source: Any, what: str = "security_encryption_keys") -> bytes:
    """The 32-byte AES-256 key ``source`` gives (base64 text, or 32 raw bytes in code).

    Raises:
        ConfigError: unreadable, or not 32 bytes once decoded.
    """
    where = f"{what} ({key_id}, {_describe(source)})"
    material = _material(source, where)
    if not isinstance(material, bytes):
        raise ConfigError(f"{where}: expected 32 key bytes or their base64 text")
    if len(material) == ENCRYPTION_KEY_BYTES and not _is_text(material):
        return material
    text = material.strip()
    try:
        key = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != ENCRYPTION_KEY_BYTES:
        raise ConfigError(
            f"{where}: an encryption key is {ENCRYPTION_KEY_BYTES} random bytes in base64 "
            "(amqptasks keys generate --kind aes)"
        )
    return key


def _is_text(material: bytes) -> bool:
    return all(32 < byte < 127 for byte in material)


def generate_ed25519() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair: ``(private PEM, public PEM)``."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def generate_hmac_secret() -> bytes:
    """A new HMAC secret: 32 random bytes as base64 text (one line)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=") + b"\n"


def generate_encryption_key() -> bytes:
    """A new AES-256 key: 32 random bytes as base64 text (one line)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(ENCRYPTION_KEY_BYTES)) + b"\n"
