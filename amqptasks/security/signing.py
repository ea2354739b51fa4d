"""Sign a task message, and check a delivered one's signature (pure: no I/O).

The signature travels in three headers: ``x-amqptasks-key-id`` (which key),
``x-amqptasks-signed-at`` (milliseconds since 1970, covered by the signature)
and ``x-amqptasks-signature`` (base64). The algorithm is the verify key's,
never the message's. See :mod:`.canonical` for what is covered.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import BadSignature
from amqptasks.security.canonical import signing_input

if TYPE_CHECKING:
    from collections.abc import Mapping

    from amqptasks.protocol.envelope import OutgoingMessage
    from amqptasks.security.keys import SigningKey, VerifyKey

__all__ = [
    "HEADER_KEY_ID",
    "HEADER_SIGNATURE",
    "HEADER_SIGNED_AT",
    "SIGNATURE_HEADERS",
    "Signer",
    "Verified",
    "Verifier",
    "is_signed",
]

HEADER_SIGNATURE = "x-amqptasks-signature"
HEADER_KEY_ID = "x-amqptasks-key-id"
HEADER_SIGNED_AT = "x-amqptasks-signed-at"
SIGNATURE_HEADERS = frozenset({HEADER_SIGNATURE, HEADER_KEY_ID, HEADER_SIGNED_AT})


def _properties(
    content_type: str | None,
    content_encoding: str | None,
    correlation_id: str | None,
    reply_to: str | None,
) -> dict[str, str | None]:
    return {
        "content_type": content_type,
        "content_encoding": content_encoding,
        "correlation_id": correlation_id,
        "reply_to": reply_to,
    }


def is_signed(headers: Mapping[str, Any] | None) -> bool:
    """Whether ``headers`` carry a signature (right or wrong)."""
    return bool(headers) and HEADER_SIGNATURE in headers  # type: ignore[operator]


class Signer:
    """Signs messages with one key."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key

    def signature_headers(
        self,
        body: bytes,
        headers: Mapping[str, Any] | None,
        *,
        content_type: str | None,
        content_encoding: str | None,
        correlation_id: str | None,
        reply_to: str | None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """The three signature headers for a message with these parts."""
        signed_at = int((time.time() if now is None else now) * 1000)
        data = signing_input(
            self.key.key_id,
            signed_at,
            body,
            headers,
            _properties(content_type, content_encoding, correlation_id, reply_to),
        )
        return {
            HEADER_KEY_ID: self.key.key_id,
            HEADER_SIGNED_AT: signed_at,
            HEADER_SIGNATURE: base64.b64encode(self.key.sign(data)).decode("ascii"),
        }

    def sign(self, message: OutgoingMessage, *, now: float | None = None) -> OutgoingMessage:
        """``message`` with a fresh signature (any earlier one replaced)."""
        headers = {k: v for k, v in message.headers.items() if k not in SIGNATURE_HEADERS}
        headers.update(
            self.signature_headers(
                message.body,
                headers,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                correlation_id=message.correlation_id,
                reply_to=message.reply_to,
                now=now,
            )
        )
        return dataclasses.replace(message, headers=headers)


@dataclass(frozen=True, slots=True)
class Verified:
    """A signature that verified: by which key, when it was made, and itself."""

    key_id: str
    signed_at: int
    signature: str


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


class Verifier:
    """Checks signatures against a set of verify keys, by key id."""

    def __init__(self, keys: Mapping[str, VerifyKey]) -> None:
        self.keys = dict(keys)

    def verify(
        self,
        body: bytes,
        headers: Mapping[str, Any] | None,
        *,
        content_type: str | None,
        content_encoding: str | None,
        correlation_id: str | None,
        reply_to: str | None,
    ) -> Verified:
        """Check the signature ``headers`` carry.

        Raises:
            BadSignature: none, malformed, an unknown key id, or it does not verify.
        """
        found = headers or {}
        signature = _text(found.get(HEADER_SIGNATURE))
        key_id = _text(found.get(HEADER_KEY_ID))
        signed_at = found.get(HEADER_SIGNED_AT)
        if signature is None:
            raise BadSignature(f"message is not signed (no {HEADER_SIGNATURE} header)")
        if not key_id or isinstance(signed_at, bool) or not isinstance(signed_at, int):
            raise BadSignature(
                f"malformed signature: {HEADER_KEY_ID} and {HEADER_SIGNED_AT} must be "
                "a text and a whole number"
            )
        key = self.keys.get(key_id)
        if key is None:
            raise BadSignature(f"signed by an unknown key id {key_id!r}")
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise BadSignature("malformed signature: not base64") from None
        data = signing_input(
            key_id,
            signed_at,
            body,
            headers,
            _properties(content_type, content_encoding, correlation_id, reply_to),
        )
        if not key.verify(data, raw):
            raise BadSignature(
                f"signature by key {key_id!r} does not match the message: "
                "its body or a signed header was altered"
            )
        return Verified(key_id, signed_at, signature)
