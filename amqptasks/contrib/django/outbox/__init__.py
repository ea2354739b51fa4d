"""A transactional outbox: enqueue a task in the same database transaction as your data.

``transaction.on_commit`` publishes after the commit, so a process that dies in
between loses the call. Here the call is a row written in the caller's own
transaction: it exists exactly when the data does. A relay
(``amqptasks outbox relay -A proj.amqptasks:app``) publishes the rows with broker
confirms and deletes each only after its confirm. See docs/django.md#outbox.

Example:
    >>> from amqptasks.contrib.django import outbox
    >>> with transaction.atomic():
    ...     order = Order.objects.create(...)
    ...     outbox.enqueue(send_receipt, (order.pk,))
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["OPTIONS", "enqueue"]

#: The ``apply_async`` options a row may carry (``countdown`` becomes an ``eta``).
OPTIONS = frozenset(
    {
        "queue",
        "exchange",
        "routing_key",
        "priority",
        "expires",
        "headers",
        "countdown",
        "eta",
        "time_limit",
        "soft_time_limit",
        "serializer",
        "compression",
        "task_id",
    }
)


def enqueue(
    task: Any,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    using: str | None = None,
    **options: Any,
) -> str:
    """Write a call of ``task`` (a task or its name) to the outbox of database ``using``.

    Inside ``transaction.atomic()`` the row commits or rolls back with the rest.
    Arguments and options must be JSON (the row's columns are JSON).

    Returns:
        The task id the message will carry (fixed now, the same on any re-publish).

    Raises:
        ConfigError: an option the outbox does not carry.
    """
    from amqptasks.contrib.django.outbox.models import OutboxMessage

    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise ConfigError(f"outbox.enqueue: unknown option(s) {', '.join(unknown)}")
    name = task if isinstance(task, str) else getattr(task, "name", None)
    if not isinstance(name, str):
        raise ConfigError(f"outbox.enqueue: {task!r} is neither a task nor a task name")
    task_id = str(options.pop("task_id", None) or uuid.uuid4())
    countdown = options.pop("countdown", None)
    if countdown is not None:
        options["eta"] = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=float(countdown))
    for key in ("eta", "expires"):
        if isinstance(options.get(key), dt.datetime):
            options[key] = options[key].isoformat()
    OutboxMessage.objects.using(using).create(
        task_id=task_id,
        task_name=name,
        args=list(args or ()),
        kwargs=dict(kwargs or {}),
        options=options,
    )
    return task_id
