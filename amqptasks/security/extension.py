"""The worker's security rule: verify, refuse and decrypt before anything is decoded.

Loaded by every worker whose app has security settings (docs/security.md).
At ``on_received`` - after the delivery cap, before the body is decoded - each
delivery goes through the :class:`~amqptasks.security.opening.Opener`:

- refused (unsigned where required, an unknown key, a wrong signature, a stale
  or replayed one) -> ``DeadLetter`` with reason ``bad-signature`` or ``replayed``,
  never run; a caller waiting on ``.get()`` gets :class:`BadSignature` (not for
  ``replayed``: a replay carries the original's reply address and task id, and its
  caller has the original's answer);
- accepted unsigned in ``log`` mode -> a warning naming the task, then run;
- encrypted (or wrapped in Celery's ``auth`` format) -> the opened body is what
  the worker decodes. The delivery as it came (sealed) is put back before the
  delivery is settled, so a dead letter or a retry never carries the clear body.

What the worker itself publishes (retries, delayed copies, workflow steps,
results) is signed by its app's producer client with the worker's own signing
key (``security_signing_key``). A worker without one publishes those unsigned,
and workers that require signatures refuse them (``bad-signature``): it says so
when it starts.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from amqptasks import constants
from amqptasks.exceptions import BadSignature
from amqptasks.logging import get_logger
from amqptasks.worker.decisions import DeadLetter
from amqptasks.worker.extension import Extension

if TYPE_CHECKING:
    from amqptasks.config import Settings
    from amqptasks.security.opening import Opener
    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.extension import WorkerContext
    from amqptasks.worker.state import MessageState

__all__ = ["MessageSecurity", "security_rules"]

log = get_logger(__name__)

#: Where the sealed delivery waits while the opened one is decoded and run.
_SEALED = "security.sealed"


class MessageSecurity(Extension):
    """Verifies and opens each delivery (see the module docstring)."""

    def __init__(self, opener: Opener | None = None) -> None:
        #: Built from the worker's settings at start when not given.
        self.opener = opener

    async def on_worker_start(self, worker: WorkerContext) -> None:
        settings = worker.app.settings
        if self.opener is None:
            from amqptasks.security.opening import opener_for

            self.opener = opener_for(settings)
        if self.opener.mode != "off" and settings.security_signing_key is None:
            log.warning(
                "this worker has no signing key: the retries, delayed copies and workflow "
                "steps it publishes go unsigned, and workers that require signatures "
                "dead-letter them (bad-signature); set security_signing_key",
                verify=self.opener.mode,
            )
        log.info(
            "message security on",
            verify=self.opener.mode,
            verify_keys=sorted(self.opener.verifier.keys) if self.opener.verifier else [],
            decrypts=self.opener.decipher is not None,
            celery_auth=self.opener.cert_store is not None,
        )

    def on_received(self, state: MessageState) -> Decision | None:
        opener = self.opener
        assert opener is not None
        delivery = state.delivery
        headers = delivery.headers if isinstance(delivery.headers, dict) else None
        try:
            opened = opener.open(
                delivery.body,
                headers,
                content_type=delivery.content_type,
                content_encoding=delivery.content_encoding,
                correlation_id=delivery.correlation_id,
                reply_to=delivery.reply_to,
                redelivered=bool(delivery.redelivered),
            )
        except BadSignature as exc:
            # A replay carries the original's reply_to and id: its caller must not be told.
            return DeadLetter(exc.reason, exc, quiet=exc.reason == constants.REASON_REPLAYED)
        if opened.trust == "unsigned" and opener.mode == "log":
            log.warning(
                "ran an unsigned message (security_verify=log)",
                task=(headers or {}).get("task"),
                task_id=state.task_id,
                queue=state.queue,
            )
        if opened.body is not delivery.body:
            opened_delivery = copy.copy(delivery)
            opened_delivery.body = opened.body
            opened_delivery.content_type = opened.content_type
            opened_delivery.content_encoding = opened.content_encoding
            state.note(_SEALED, delivery)
            state.delivery = opened_delivery
        return None

    def before_settle(self, state: MessageState, decision: Decision) -> None:
        sealed = state.noted(_SEALED)
        if sealed is not None:
            state.delivery = sealed


def security_rules(settings: Settings) -> list[Extension]:
    """The security rule when ``settings`` configure message security, else nothing.

    Keys and certificates are read now, so that a worker with a missing or unusable
    key stops before it connects.

    Raises:
        ConfigError: a key or certificate that cannot be read or used.
    """
    if not settings.security_configured:
        return []
    # Here, not at the top: a worker that checks nothing never loads cryptography.
    from amqptasks.security.opening import opener_for

    return [MessageSecurity(opener_for(settings))]
