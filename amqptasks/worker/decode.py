"""Turn a delivery into a :class:`TaskMessage`, within the worker's size limits.

Every failure is a :class:`~amqptasks.exceptions.DecodeError` whose ``reason``
says how the delivery is dead-lettered (``decode-error``, ``bad-message``,
``too-large``) and whose text names the problem. Two limits protect the worker
(see docs/worker.md#size-limits):

- ``max_message_size``: a body larger than this is refused before any work;
- ``max_inflated_size``: a compressed body is inflated at most this far. The
  decompressor stops one byte past the limit, so a 1.5 KB bomb that would
  inflate to gigabytes costs a few milliseconds and no memory.

Small compressed bodies are inflated on the event loop. One that inflates past
:data:`INLINE_INFLATE` is inflated again, up to the limit, in the loop's
default executor: zlib, bz2 and lzma release the GIL while they work, so
heartbeats, acks and other deliveries go on meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING

from amqptasks import constants
from amqptasks.exceptions import DecodeError
from amqptasks.protocol.envelope import TaskMessage, parse_task_message

if TYPE_CHECKING:
    from amqptasks.config import Settings
    from amqptasks.transport.consumer import Delivery

__all__ = ["INLINE_INFLATE", "decode_delivery", "decode_inline", "decode_off_loop"]

#: Bytes a compressed body may inflate to on the event loop (about a millisecond of work).
INLINE_INFLATE = 1024 * 1024


def _parse(delivery: Delivery, settings: Settings, max_inflated_size: int) -> TaskMessage:
    return parse_task_message(
        delivery.body,
        headers=delivery.headers,
        content_type=delivery.content_type,
        accept_content=settings.accept_content,
        reply_to=delivery.reply_to,
        correlation_id=delivery.correlation_id,
        max_inflated_size=max_inflated_size,
    )


async def decode_delivery(delivery: Delivery, settings: Settings) -> TaskMessage:
    """Decode ``delivery`` as a Celery v2 task message, checking every field.

    Raises:
        DecodeError: ``reason`` is ``too-large`` over ``max_message_size`` or
            ``max_inflated_size``, ``bad-message`` for a header of the wrong
            type or value, ``decode-error`` for a body that cannot be decoded.
    """
    message = decode_inline(delivery, settings)
    if message is None:
        message = await decode_off_loop(delivery, settings)
    return message


def decode_inline(delivery: Delivery, settings: Settings) -> TaskMessage | None:
    """:func:`decode_delivery` on the loop; None for a body that inflates past
    :data:`INLINE_INFLATE` (hand it to :func:`decode_off_loop`)."""
    size = len(delivery.body)
    if size > settings.max_message_size:
        raise DecodeError(
            f"message body of {size} bytes is over max_message_size ({settings.max_message_size})",
            raw=delivery.body[:64],
            content_type=delivery.content_type or "",
            reason=constants.REASON_TOO_LARGE,
        )
    limit = settings.max_inflated_size
    try:
        return _parse(delivery, settings, min(limit, INLINE_INFLATE))
    except DecodeError as exc:
        if exc.reason != constants.REASON_TOO_LARGE or limit <= INLINE_INFLATE:
            raise
    return None


async def decode_off_loop(delivery: Delivery, settings: Settings) -> TaskMessage:
    """Decode ``delivery`` in the loop's executor, inflating up to ``max_inflated_size``."""
    loop = asyncio.get_running_loop()
    limit = settings.max_inflated_size
    return await loop.run_in_executor(None, functools.partial(_parse, delivery, settings, limit))
