"""What a worker does to a delivery before it decodes it: verify, then decrypt (pure).

:class:`Opener` checks the signature (and that it is fresh and not a replay),
then opens what the body is wrapped in (AES-GCM encryption, Celery's ``auth``
format), and returns the body to decode. It raises
:class:`~amqptasks.exceptions.BadSignature`, whose ``reason`` is how the
delivery is dead-lettered, for anything it refuses.

Modes (``security_verify``): ``require`` refuses a message with no signature
that it can check (ours, or Celery's ``auth`` with ``security_cert_store``);
``log`` accepts it and says so (but a signature that is present must verify);
``off`` checks nothing and only decrypts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import BadSignature, ConfigError
from amqptasks.security import celery_auth, encryption
from amqptasks.security.keys import encryption_key, signing_key, verify_key
from amqptasks.security.replay import ReplayGuard
from amqptasks.security.signing import Verifier, is_signed

if TYPE_CHECKING:
    from collections.abc import Mapping

    from amqptasks.config import Settings
    from amqptasks.security.keys import VerifyKey

__all__ = ["Opened", "Opener", "opener_for", "verifier_for"]


@dataclass(frozen=True, slots=True)
class Opened:
    """A delivery's body as it is to be decoded, and how it was vouched for."""

    body: bytes
    content_type: str | None
    content_encoding: str | None
    #: ``signed`` (ours), ``celery-auth`` (body only) or ``unsigned`` (not checked).
    trust: str


class Opener:
    """Verifies and opens deliveries for one worker process (see the module docstring)."""

    def __init__(
        self,
        *,
        mode: str,
        verifier: Verifier | None,
        guard: ReplayGuard,
        decipher: encryption.Decipher | None = None,
        cert_store: celery_auth.CeleryCertStore | None = None,
    ) -> None:
        self.mode = mode
        self.verifier = verifier
        self.guard = guard
        self.decipher = decipher
        self.cert_store = cert_store

    def open(
        self,
        body: bytes,
        headers: Mapping[str, Any] | None,
        *,
        content_type: str | None,
        content_encoding: str | None,
        correlation_id: str | None,
        reply_to: str | None,
        redelivered: bool,
    ) -> Opened:
        """Check and open one delivery.

        Raises:
            BadSignature: refused; ``reason`` says how it is dead-lettered.
        """
        trust = "unsigned"
        if is_signed(headers) and self.mode != "off":
            if self.verifier is None:
                raise BadSignature("message is signed but this worker has no verify keys")
            verified = self.verifier.verify(
                body,
                headers,
                content_type=content_type,
                content_encoding=content_encoding,
                correlation_id=correlation_id,
                reply_to=reply_to,
            )
            self.guard.check(verified, eta=(headers or {}).get("eta"), redelivered=redelivered)
            trust = "signed"
        for _ in range(2):  # at most: Celery auth inside encryption
            if content_type == encryption.CONTENT_TYPE:
                if self.decipher is None:
                    raise BadSignature("message is encrypted but this worker has no key")
                body, content_type, content_encoding = self.decipher.open(body)
            elif content_type == celery_auth.CONTENT_TYPE and self.cert_store is not None:
                body, content_type, content_encoding = self.cert_store.open(body)
                if trust == "unsigned":
                    trust = "celery-auth"
        if trust == "unsigned" and self.mode == "require":
            raise BadSignature(
                "message is not signed (no x-amqptasks-signature header, no Celery auth "
                "body) and this worker requires signatures"
            )
        return Opened(body, content_type, content_encoding, trust)


def verify_keys(settings: Settings) -> dict[str, VerifyKey]:
    """Every verify key of ``settings``: ``security_verify_keys``, and the signing key's own."""
    keys = {
        key_id: verify_key(key_id, source)
        for key_id, source in (settings.security_verify_keys or {}).items()
    }
    if settings.security_signing_key is not None and settings.security_signing_key_id:
        own = signing_key(settings.security_signing_key_id, settings.security_signing_key)
        keys.setdefault(own.key_id, own.verify_key())
    return keys


def verifier_for(settings: Settings) -> Verifier | None:
    """A verifier with the keys of ``settings``; None when there are none."""
    keys = verify_keys(settings)
    return Verifier(keys) if keys else None


def opener_for(settings: Settings) -> Opener:
    """The opener ``settings`` describe (keys read now).

    Raises:
        ConfigError: a key or certificate that cannot be read or used, or
            ``require`` with nothing to verify against.
    """
    mode = settings.security_verify_mode
    verifier = verifier_for(settings)
    cert_store = None
    if settings.security_cert_store:
        cert_store = celery_auth.CeleryCertStore(
            settings.security_cert_store, settings.security_digest
        )
    if mode == "require" and verifier is None and cert_store is None:
        raise ConfigError(
            "security_verify=require needs security_verify_keys (or a signing key, or "
            "security_cert_store) to check signatures against"
        )
    decipher = None
    if settings.security_encryption_keys:
        decipher = encryption.Decipher(
            {
                key_id: encryption_key(key_id, source)
                for key_id, source in settings.security_encryption_keys.items()
            }
        )
    guard = ReplayGuard(
        settings.security_replay_window,
        settings.security_clock_skew,
        settings.security_replay_cache_size,
    )
    return Opener(
        mode=mode, verifier=verifier, guard=guard, decipher=decipher, cert_store=cert_store
    )
