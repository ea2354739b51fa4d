"""Whether settings ask for message security, answered without loading ``cryptography``.

Producers and workers that sign nothing (the common case) never import the
cryptography library: it costs start-up time and several MiB of memory per
process. These are the entry points the rest of the toolkit calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amqptasks.config import Settings
    from amqptasks.security.sealing import Sealer
    from amqptasks.security.signing import Verifier


def sealer_for(settings: Settings) -> Sealer | None:
    """:func:`amqptasks.security.sealing.sealer_for`, or None without loading it."""
    if (
        settings.security_signing_key is None
        and settings.security_encryption_key_id is None
        and not settings.security_celery_auth
    ):
        return None
    from amqptasks.security import sealing

    return sealing.sealer_for(settings)


def verifier_for(settings: Settings) -> Verifier | None:
    """:func:`amqptasks.security.opening.verifier_for`, or None without loading it."""
    if not settings.security_verify_keys and settings.security_signing_key is None:
        return None
    from amqptasks.security import opening

    return opening.verifier_for(settings)
