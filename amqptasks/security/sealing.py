"""What producers do to a task message before it leaves: wrap, encrypt, sign (pure).

Applied to every task message a producer client publishes (``delay``,
``apply_async``, ``send_task``, workflow steps, beat, a worker's retries and
delayed copies, ``amqptasks dlq replay``), in this order:

1. Celery ``auth`` wrapping (``security_celery_auth``), for Celery workers;
2. encryption (``security_encryption_key_id``), ``argsrepr``/``kwargsrepr`` blanked;
3. signing (``security_signing_key``), over the result.

A body already wrapped or encrypted (a retry of a delivered message) is left as
it is; the signature is always made afresh.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from amqptasks.security import celery_auth, encryption
from amqptasks.security.keys import encryption_key, signing_key
from amqptasks.security.signing import Signer

if TYPE_CHECKING:
    from amqptasks.config import Settings
    from amqptasks.protocol.envelope import OutgoingMessage

__all__ = ["Sealer", "sealer_for"]

_WRAPPED = frozenset({celery_auth.CONTENT_TYPE, encryption.CONTENT_TYPE})


class Sealer:
    """Wraps, encrypts and signs outgoing messages (see the module docstring)."""

    def __init__(
        self,
        signer: Signer | None = None,
        cipher: encryption.Cipher | None = None,
        celery: celery_auth.CeleryAuthSigner | None = None,
    ) -> None:
        self.signer = signer
        self.cipher = cipher
        self.celery = celery

    def seal(self, message: OutgoingMessage) -> OutgoingMessage:
        """``message`` as it goes on the wire."""
        body, content_type = message.body, message.content_type
        content_encoding, headers = message.content_encoding, message.headers
        if self.celery is not None and content_type not in _WRAPPED:
            body = self.celery.wrap(body, content_type, content_encoding)
            content_type, content_encoding = celery_auth.CONTENT_TYPE, celery_auth.CONTENT_ENCODING
        if self.cipher is not None and content_type != encryption.CONTENT_TYPE:
            body = self.cipher.seal(body, content_type, content_encoding)
            content_type, content_encoding = encryption.CONTENT_TYPE, "binary"
            headers = dict(headers)
            for name in ("argsrepr", "kwargsrepr"):
                if name in headers:
                    headers[name] = encryption.HIDDEN_REPR
        if body is not message.body or headers is not message.headers:
            message = dataclasses.replace(
                message,
                body=body,
                content_type=content_type,
                content_encoding=content_encoding,
                headers=headers,
            )
        if self.signer is not None:
            message = self.signer.sign(message)
        return message

    def sign(self, message: OutgoingMessage) -> OutgoingMessage:
        """``message`` signed (a result reply, say), when this process has a signing key."""
        return message if self.signer is None else self.signer.sign(message)


def sealer_for(settings: Settings) -> Sealer | None:
    """The sealer ``settings`` ask for; None when they ask for nothing (the common case).

    Raises:
        ConfigError: a key that cannot be read or used.
    """
    signer = cipher = celery = None
    if settings.security_signing_key is not None:
        assert settings.security_signing_key_id is not None  # checked with the settings
        signer = Signer(
            signing_key(settings.security_signing_key_id, settings.security_signing_key)
        )
    key_id = settings.security_encryption_key_id
    if key_id is not None:
        source = (settings.security_encryption_keys or {})[key_id]
        cipher = encryption.Cipher(key_id, encryption_key(key_id, source))
    if settings.security_celery_auth:
        assert settings.security_key and settings.security_certificate
        celery = celery_auth.CeleryAuthSigner(
            settings.security_key,
            settings.security_certificate,
            settings.security_key_password,
            settings.security_digest,
        )
    if signer is None and cipher is None and celery is None:
        return None
    return Sealer(signer, cipher, celery)
