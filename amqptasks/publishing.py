"""Turn a task call into an outgoing message (pure: no I/O).

Shared by the sync and async publishing paths so both send identical messages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from amqptasks.exceptions import ConfigError
from amqptasks.policies.limits import check_priority, check_time_limits
from amqptasks.protocol.envelope import OutgoingMessage, build_task_message, new_task_id
from amqptasks.request import current_request
from amqptasks.topology import delays, names
from amqptasks.transport._fieldtable import check_headers

if TYPE_CHECKING:
    from amqptasks.config import Settings
    from amqptasks.routing import Route, Router


class PublishOptions(TypedDict, total=False):
    """Per-call options of ``apply_async``/``aapply_async``.

    Attributes:
        task_id: Use this id instead of a new UUID.
        queue: Send to this queue (through the default exchange).
        exchange: Publish to this exchange instead.
        routing_key: Routing key (defaults to the queue name).
        priority: 0-255; honoured by queues declared with ``x-max-priority``.
        expires: Seconds from now, or a datetime (naive = UTC), after which a
            worker does not run the task and reports it REVOKED.
        headers: Extra message headers.
        serializer: ``json``, ``msgpack``, ``yaml`` (or ``pickle`` if accepted).
        compression: ``zlib``/``gzip``, ``bz2`` or ``lzma``.
        ignore_result: Send no result back.
        countdown: Seconds to wait before the task runs (held by the broker;
            a fraction of a second is rounded up).
        eta: When the task may run at the earliest (datetime; naive = UTC).
        retry: Retry publishing after a connection loss (default: the app's
            ``publish_retry``), with the same task id.
        retry_policy: ``max_retries``, ``interval_start``, ``interval_step``,
            ``interval_max`` for those retries (as Celery).
        time_limit: Hard time limit of this call, in seconds (overrides the
            task's and the worker's); sent in Celery's ``timelimit`` header.
        soft_time_limit: Soft time limit of this call, in seconds.
        link: A signature (or a list of them) called with the result when the
            task succeeds (Celery's ``callbacks``; see :doc:`workflows`).
        link_error: A signature (or a list) called with the task id when the
            task fails for good (Celery's ``errbacks``).
    """

    task_id: str
    queue: str
    exchange: str
    routing_key: str
    priority: int
    expires: dt.datetime | float
    headers: Mapping[str, Any]
    serializer: str
    compression: str
    ignore_result: bool
    countdown: float
    eta: dt.datetime
    retry: bool
    retry_policy: Mapping[str, float]
    time_limit: float
    soft_time_limit: float
    link: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    link_error: Mapping[str, Any] | Sequence[Mapping[str, Any]]


PUBLISH_OPTION_NAMES = frozenset(PublishOptions.__annotations__)


@dataclass(frozen=True, slots=True)
class PreparedCall:
    """A message plus what the publisher needs to know about it."""

    message: OutgoingMessage
    route: Route
    wants_result: bool
    #: Whole seconds the broker must hold the message (0 = publish straight away).
    delay: int = 0
    #: The exact wait asked for, and when (``time.monotonic()``) it was worked out.
    wait_seconds: float = 0.0
    prepared_at: float = 0.0

    def remaining_delay(self) -> int:
        """:attr:`delay` less the time spent since the call was prepared (declaring, say)."""
        if not self.delay:
            return 0
        return delays.delay_seconds(self.wait_seconds - (time.monotonic() - self.prepared_at))


def to_utc_iso(when: dt.datetime | float | int, *, now: dt.datetime | None = None) -> str:
    """An ISO 8601 UTC timestamp for a datetime or a number of seconds from now.

    Naive datetimes are taken as UTC.
    """
    if isinstance(when, dt.datetime):
        moment = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    elif isinstance(when, int | float) and not isinstance(when, bool):
        try:
            moment = (now or dt.datetime.now(dt.timezone.utc)) + dt.timedelta(seconds=float(when))
        except (OverflowError, ValueError):  # NaN, infinities, centuries away
            raise ConfigError(f"{when!r} seconds is not a usable time") from None
    else:
        raise ConfigError(f"expected seconds or a datetime, got {when!r}")
    return moment.astimezone(dt.timezone.utc).isoformat()


def prepare_call(
    *,
    settings: Settings,
    router: Router,
    task_name: str,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    reply_to: str | None,
    task_queue: str | None = None,
    task_serializer: str | None = None,
    task_compression: str | None = None,
    task_ignore_result: bool | None = None,
    task_id: str | None = None,
    queue: str | None = None,
    exchange: str | None = None,
    routing_key: str | None = None,
    priority: int | None = None,
    expires: dt.datetime | float | None = None,
    headers: Mapping[str, Any] | None = None,
    serializer: str | None = None,
    compression: str | None = None,
    ignore_result: bool | None = None,
    countdown: float | None = None,
    eta: dt.datetime | None = None,
    time_limit: float | None = None,
    soft_time_limit: float | None = None,
    retries: int = 0,
    embed: Mapping[str, Any] | None = None,
    link: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    link_error: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    root_id: str | None = None,
    parent_id: str | None = None,
    group_id: str | None = None,
    group_index: int | None = None,
    now: dt.datetime | None = None,
) -> PreparedCall:
    """Resolve options (call > task > app) and encode the message.

    ``embed`` (callbacks, errbacks, chain, chord) goes into the message body
    as Celery's workflows expect; workflows set it, users do not. ``link`` and
    ``link_error`` (signature dicts) are added to its callbacks and errbacks.
    ``root_id``/``parent_id`` default to the running task's (a call made from a
    task); ``group_id``/``group_index`` fill Celery's ``group`` headers.

    Raises:
        ConfigError: bad priority, serializer, compression or expires, a header
            AMQP cannot carry, or a body over ``max_message_size``/``max_inflated_size``.
        TypeError: arguments that the serializer cannot encode.
    """
    # Exact types first: an ABC isinstance check costs more than the common case needs.
    if (
        args is not None
        and type(args) is not tuple
        and type(args) is not list
        and (isinstance(args, str | bytes) or not isinstance(args, Sequence))
    ):
        raise ConfigError(f"args must be a list or tuple, got {type(args).__name__}")
    if kwargs is not None and type(kwargs) is not dict and not isinstance(kwargs, Mapping):
        raise ConfigError(f"kwargs must be a mapping, got {type(kwargs).__name__}")
    chosen_serializer = serializer or task_serializer or settings.task_serializer
    skip_result = (
        ignore_result
        if ignore_result is not None
        else task_ignore_result
        if task_ignore_result is not None
        else settings.task_ignore_result
    )
    route = router.resolve(
        task_name,
        args or (),
        kwargs or {},
        task_queue=task_queue,
        queue=queue,
        exchange=exchange,
        routing_key=routing_key,
    )
    if priority is None:
        priority = route.priority
    check_priority(priority)
    if countdown is not None and eta is not None:
        raise ConfigError("countdown= and eta= both say when to run: pass only one")
    if time_limit is not None or soft_time_limit is not None:
        check_time_limits(soft_time_limit, time_limit, f"{task_name}.apply_async()")
    moment = now
    if moment is None and (countdown is not None or eta is not None or expires is not None):
        moment = dt.datetime.now(dt.timezone.utc)
    eta_iso: str | None = None
    wait = 0
    exact = 0.0
    if countdown is not None or eta is not None:
        assert moment is not None
        if eta is not None and not isinstance(eta, dt.datetime):
            raise ConfigError(f"eta must be a datetime, got {eta!r}")
        when = eta if eta is not None else countdown
        assert when is not None
        eta_iso = to_utc_iso(when, now=moment)
        exact = (dt.datetime.fromisoformat(eta_iso) - moment).total_seconds()
        wait = delays.delay_seconds(exact)
    if headers:
        check_headers(headers)
    new_id = task_id or new_task_id()
    parent = current_request.get()
    if link or link_error:
        embed = _with_links(embed, link, link_error)
    if root_id is None and parent is not None:
        root_id = parent.root_id or parent.id
    if parent_id is None and parent is not None:
        parent_id = parent.id
    message = build_task_message(
        task=task_name,
        task_id=new_id,
        args=args or (),
        kwargs=kwargs or {},
        exchange=route.exchange,
        routing_key=route.routing_key,
        serializer=chosen_serializer,
        compression_method=compression or task_compression or settings.task_compression,
        reply_to=None if skip_result else reply_to,
        priority=priority,
        root_id=root_id,
        parent_id=parent_id,
        group=group_id,
        group_index=group_index,
        eta=eta_iso,
        expires=to_utc_iso(expires, now=moment) if expires is not None else None,
        retries=retries,
        timelimit=(soft_time_limit, time_limit),
        ignore_result=skip_result,
        extra_headers=headers,
        embed=embed,
        max_message_size=settings.max_message_size,
        max_inflated_size=settings.max_inflated_size,
    )
    return PreparedCall(
        message=message,
        route=route,
        wants_result=not skip_result,
        delay=wait,
        wait_seconds=exact if wait else 0.0,
        prepared_at=time.monotonic(),
    )


def _signature_list(
    given: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None, name: str
) -> list[dict[str, Any]]:
    if given is None:
        return []
    items = [given] if isinstance(given, Mapping) else list(given)
    for item in items:
        if not isinstance(item, Mapping) or "task" not in item:
            raise ConfigError(f"{name}= takes signatures (task.s(...)), got {item!r}")
    return [dict(item) for item in items]


def _with_links(
    embed: Mapping[str, Any] | None,
    link: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    link_error: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
) -> dict[str, Any]:
    """``embed`` with ``link``/``link_error`` added to its callbacks/errbacks."""
    merged = dict(embed or {})
    callbacks = [*(merged.get("callbacks") or []), *_signature_list(link, "link")]
    errbacks = [*(merged.get("errbacks") or []), *_signature_list(link_error, "link_error")]
    merged["callbacks"] = callbacks or None
    merged["errbacks"] = errbacks or None
    return merged


def delayed_message(message: OutgoingMessage, seconds: int, prefix: str) -> OutgoingMessage:
    """``message`` re-addressed to the delay level where a ``seconds`` wait starts.

    See :mod:`amqptasks.topology.delays`. Headers that RabbitMQ adds on
    dead-lettering (``x-death`` and friends) are dropped: a message delayed
    again through the same queues would otherwise be taken for a dead-letter
    cycle and dropped by the broker.
    """
    headers = {
        key: value for key, value in message.headers.items() if key not in DEAD_LETTER_HEADERS
    }
    return dataclasses.replace(
        message,
        exchange=names.delay_level(prefix, delays.entry_level(seconds)),
        routing_key=delays.routing_key(seconds, message.exchange, message.routing_key),
        headers=headers,
    )


#: Headers RabbitMQ adds when it dead-letters a message.
DEAD_LETTER_HEADERS = frozenset(
    {
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)
