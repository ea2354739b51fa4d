"""AES-256-GCM encryption of task bodies, with key ids (pure).

An encrypted body says which key sealed it, so keys rotate: producers encrypt
with one key id, workers hold every key that may still be in a queue. The
original content type and encoding are sealed inside; the message's own are
:data:`CONTENT_TYPE` and ``binary``. Headers stay in clear (they route the
message); producers blank ``argsrepr``/``kwargsrepr``, which would show the
arguments.

Body layout: ``0x01 | len(key id) | key id | 12-byte nonce | ciphertext+tag``,
the first two fields and the key id authenticated as associated data.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from amqptasks.exceptions import BadSignature

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["CONTENT_TYPE", "HIDDEN_REPR", "Cipher", "Decipher"]

#: The content type of an encrypted body.
CONTENT_TYPE = "application/x-amqptasks-encrypted"
#: What ``argsrepr`` and ``kwargsrepr`` say of an encrypted call.
HIDDEN_REPR = "<encrypted>"
_VERSION = 1
_NONCE = 12
_SEP = b"\x00"


class Cipher:
    """Encrypts bodies with one key."""

    def __init__(self, key_id: str, key: bytes) -> None:
        raw_id = key_id.encode("utf-8")
        if not 0 < len(raw_id) < 256:
            raise ValueError("an encryption key id is 1 to 255 bytes")
        self._prefix = bytes([_VERSION, len(raw_id)]) + raw_id
        self._aead = AESGCM(key)

    def seal(self, body: bytes, content_type: str, content_encoding: str) -> bytes:
        """The encrypted body (its content type becomes :data:`CONTENT_TYPE`)."""
        nonce = os.urandom(_NONCE)
        plain = content_type.encode() + _SEP + content_encoding.encode() + _SEP + body
        return self._prefix + nonce + self._aead.encrypt(nonce, plain, self._prefix)


class Decipher:
    """Decrypts bodies sealed with any of its keys."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}

    def open(self, body: bytes) -> tuple[bytes, str, str]:
        """``(body, content_type, content_encoding)`` of an encrypted body.

        Raises:
            BadSignature: malformed, an unknown key id, or altered (GCM's tag).
        """
        if len(body) < 2 or body[0] != _VERSION:
            raise BadSignature("encrypted body of an unknown format")
        end = 2 + body[1]
        raw_id = body[2:end]
        key_id = raw_id.decode("utf-8", "replace")
        aead = self._keys.get(key_id)
        if aead is None:
            raise BadSignature(f"encrypted with an unknown key id {key_id!r}")
        nonce = body[end : end + _NONCE]
        try:
            plain = aead.decrypt(nonce, body[end + _NONCE :], body[:end])
        except (InvalidTag, ValueError):
            raise BadSignature(
                f"encrypted body does not decrypt with key {key_id!r}: it was altered"
            ) from None
        content_type, _, rest = plain.partition(_SEP)
        content_encoding, _, inner = rest.partition(_SEP)
        return inner, content_type.decode(), content_encoding.decode()
