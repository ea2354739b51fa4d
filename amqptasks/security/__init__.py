"""Signed and encrypted task messages (docs/security.md).

Pure parts, lowest first: :mod:`.keys` (where key material comes from),
:mod:`.canonical` (the bytes a signature covers), :mod:`.signing`,
:mod:`.replay`, :mod:`.encryption`, :mod:`.celery_auth` (Celery's ``auth``
serializer on the wire); then :mod:`.sealing` (what producers do before a
message leaves) and :mod:`.opening` (what workers do before they decode it).
:mod:`.extension` is the worker rule that uses them.
"""

from __future__ import annotations

from amqptasks.security.keys import (
    generate_ed25519,
    generate_encryption_key,
    generate_hmac_secret,
    signing_key,
    verify_key,
)

__all__ = [
    "generate_ed25519",
    "generate_encryption_key",
    "generate_hmac_secret",
    "signing_key",
    "verify_key",
]
