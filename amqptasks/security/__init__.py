"""Signed and encrypted task messages (docs/security.md).

Pure parts, lowest first: :mod:`.keys` (where key material comes from),
:mod:`.canonical` (the bytes a signature covers), :mod:`.signing`,
:mod:`.replay`, :mod:`.encryption`, :mod:`.celery_auth` (Celery's ``auth``
serializer on the wire); then :mod:`.sealing` (what producers do before a
message leaves) and :mod:`.opening` (what workers do before they decode it).
:mod:`.extension` is the worker rule that uses them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "generate_ed25519",
    "generate_encryption_key",
    "generate_hmac_secret",
    "signing_key",
    "verify_key",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use: a process that signs nothing never imports cryptography.
    if name in __all__:
        from amqptasks.security import keys

        return getattr(keys, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
