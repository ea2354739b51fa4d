"""Message security settings: signing keys, verification, replay window, encryption, Celery auth.

Keys are given as *sources* (see :mod:`amqptasks.security.keys`): ``file:/path``,
``env:VARIABLE``, a callable returning the key, or the key itself (code only).
Nothing here reads a key: they are loaded when a producer or worker first needs them,
so a missing file is reported by the process that uses it, with the setting's name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from amqptasks.config._group import SettingsGroup
from amqptasks.config._parse import optional_str, parse_bool, positive_float
from amqptasks.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: Values of ``security_verify``.
VERIFY_MODES = ("auto", "require", "log", "off")


def key_map(value: str) -> dict[str, str]:
    """``id=source,id=source`` (the environment's form of a key mapping)."""
    found: dict[str, str] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        key_id, sep, source = part.partition("=")
        if not sep or not key_id.strip() or not source.strip():
            raise ValueError(f"expected id=source, got {part.strip()!r}")
        found[key_id.strip()] = source.strip()
    return found


@dataclass(frozen=True)
class SecuritySettings(SettingsGroup):
    """Signed and encrypted task messages (docs/security.md)."""

    #: The key this process signs with (Ed25519 private key or HMAC secret), as a source.
    security_signing_key: Any = field(default=None, repr=False)
    #: The id sent with each signature (workers look the verify key up by it).
    security_signing_key_id: str | None = None
    #: Keys accepted when verifying, by id: Ed25519 public keys or HMAC secrets.
    security_verify_keys: Any = field(default=None, repr=False)
    #: ``require`` (refuse unsigned messages), ``log`` (accept them with a warning: for
    #: migrating an estate), ``off``; ``auto``: ``require`` as soon as a verify key, a
    #: signing key or a Celery certificate store is configured, else ``off``.
    security_verify: str = "auto"
    #: Seconds a signature stays valid after it was made (or after the message's ETA):
    #: longer than a message may wait in a queue (a worker outage), shorter is safer.
    security_replay_window: float = 3600.0
    #: Seconds a signature may seem to come from the future (clocks differ).
    security_clock_skew: float = 30.0
    #: Signatures remembered per worker process to refuse replays (oldest forgotten first).
    security_replay_cache_size: int = 200_000
    #: AES-256-GCM keys, by id (32 random bytes, base64), for reading encrypted bodies.
    security_encryption_keys: Any = field(default=None, repr=False)
    #: The id of the key that encrypts task bodies (None: bodies go in clear).
    security_encryption_key_id: str | None = None
    #: ``.get()`` refuses results not signed by a verify key (workers sign them when
    #: they have a signing key).
    security_verify_results: bool = False
    #: Celery's ``auth`` serializer: the PEM private key (RSA) that signs bodies...
    security_key: str | None = None
    #: ... its password, if any (never logged) ...
    security_key_password: str | None = field(default=None, repr=False)
    #: ... and the x509 certificate that goes with it.
    security_certificate: str | None = None
    #: Certificates of trusted Celery signers: a directory, a file or a glob.
    security_cert_store: str | None = None
    #: Digest of Celery's ``auth`` signatures.
    security_digest: str = "sha256"
    #: Producers wrap task bodies in Celery's ``auth`` format (for Celery workers that
    #: accept only ``auth``); needs ``security_key`` and ``security_certificate``.
    security_celery_auth: bool = False

    ENV_PARSERS: ClassVar[Mapping[str, Callable[[str], Any]]] = {
        "security_signing_key_id": optional_str,
        "security_verify_keys": key_map,
        "security_replay_window": positive_float,
        "security_clock_skew": float,
        "security_replay_cache_size": int,
        "security_encryption_keys": key_map,
        "security_encryption_key_id": optional_str,
        "security_verify_results": parse_bool,
        "security_key": optional_str,
        "security_key_password": optional_str,
        "security_certificate": optional_str,
        "security_cert_store": optional_str,
        "security_celery_auth": parse_bool,
    }

    def check(self) -> None:
        """Known modes; a window > 0; ids given with the keys they name."""
        if self.security_verify not in VERIFY_MODES:
            raise ConfigError(
                f"security_verify must be one of {', '.join(VERIFY_MODES)}, "
                f"got {self.security_verify!r}"
            )
        window = self.security_replay_window
        if isinstance(window, bool) or not isinstance(window, int | float) or not window > 0:
            raise ConfigError(f"security_replay_window must be seconds > 0, got {window!r}")
        if math.isinf(window):
            raise ConfigError("security_replay_window must be finite")
        skew = self.security_clock_skew
        if isinstance(skew, bool) or not isinstance(skew, int | float) or not skew >= 0:
            raise ConfigError(f"security_clock_skew must be seconds >= 0, got {skew!r}")
        size = self.security_replay_cache_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"security_replay_cache_size must be an integer >= 1, got {size!r}")
        if self.security_signing_key is not None and not self.security_signing_key_id:
            raise ConfigError(
                "security_signing_key needs security_signing_key_id (the id workers know "
                "its verify key by)"
            )
        for name in ("security_verify_keys", "security_encryption_keys"):
            value = getattr(self, name)
            if value is not None and not hasattr(value, "items"):
                raise ConfigError(f"{name} must be a mapping of key id to key source")
        if self.security_encryption_key_id is not None and self.security_encryption_key_id not in (
            self.security_encryption_keys or {}
        ):
            raise ConfigError(
                f"security_encryption_key_id {self.security_encryption_key_id!r} is not one of "
                "security_encryption_keys"
            )
        if self.security_celery_auth and not (self.security_key and self.security_certificate):
            raise ConfigError(
                "security_celery_auth needs security_key and security_certificate (PEM files)"
            )

    @property
    def security_configured(self) -> bool:
        """Whether any message security is set up (workers then load the security rule)."""
        return bool(
            self.security_signing_key is not None
            or self.security_verify_keys
            or self.security_encryption_keys
            or self.security_cert_store
            or self.security_celery_auth
            or self.security_verify in ("require", "log")
        )

    @property
    def security_verify_mode(self) -> str:
        """``security_verify`` with ``auto`` worked out: ``require``, ``log`` or ``off``."""
        if self.security_verify != "auto":
            return self.security_verify
        keys = self.security_verify_keys or self.security_signing_key is not None
        return "require" if keys or self.security_cert_store else "off"
