"""Start-up checks of a worker's settings against the broker's (logs warnings only)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from amqptasks.logging import get_logger
from amqptasks.topology.features import BrokerFeatures
from amqptasks.worker.timelimits import (
    consumer_timeout_from_management,
    too_long_for_consumer_timeout,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from amqptasks.app import App

log = get_logger(__name__)


async def broker_features(app: App) -> BrokerFeatures | None:
    """What the broker's version offers, from the management API (None if unknown)."""
    management = app.management()
    version = await asyncio.get_running_loop().run_in_executor(None, management.version)
    return BrokerFeatures.parse(version)


async def consumer_timeout(
    app: App, queue: str, features: BrokerFeatures | None = None
) -> tuple[float, str]:
    """The consumer timeout (s) that applies to ``queue``, and where it was read.

    RabbitMQ 3.12+ shows a queue's own timeout (``x-consumer-timeout`` argument,
    ``consumer-timeout`` policy) in the management API; the node-wide
    ``consumer_timeout`` is not shown there by 3.10 (nor later), so it comes from
    the ``broker_consumer_timeout`` setting. A broker older than 3.12 keeps the
    argument but ignores it: then the node-wide timeout applies, with a warning.
    """
    management = app.management()
    found = await asyncio.get_running_loop().run_in_executor(None, management.queue, queue)
    seconds = consumer_timeout_from_management(found)
    if seconds is not None and features is not None and not features.per_queue_consumer_timeout:
        log.warning(
            "the queue's own consumer timeout has no effect on this broker "
            "(x-consumer-timeout needs RabbitMQ 3.12 or later); its node-wide "
            "consumer_timeout applies",
            queue=queue,
            queue_consumer_timeout=seconds,
            broker_version=str(features),
        )
        seconds = None
    if seconds is not None:
        return seconds, "management API (queue argument or policy)"
    return app.settings.broker_consumer_timeout, "setting broker_consumer_timeout"


async def warn_about_consumer_timeouts(
    app: App, queues: Sequence[str], worker_hard_limit: float | None
) -> None:
    """Warn about consumer timeouts that do not do what the app asks.

    A queue's own ``consumer_timeout`` on a broker that ignores it (older than
    3.12); and tasks whose hard time limit the broker's consumer timeout would
    cut: RabbitMQ closes the channel of a consumer that keeps a delivery
    unacked longer than its consumer timeout (default 30 min) and redelivers
    every unacked message of that channel, so a longer time limit is never
    reached. https://www.rabbitmq.com/docs/consumers#acknowledgement-timeout
    """
    tasks = [app.tasks.get(name) for name in app.tasks]
    limits = [
        (task.name, task.time_limit if task.time_limit is not None else worker_hard_limit)
        for task in tasks
    ]
    has_limits = any(hard is not None for _, hard in limits)
    own_timeout = [q for q in queues if app.router.queue(q).consumer_timeout is not None]
    if not has_limits and not own_timeout:
        return
    features = await broker_features(app)
    checked = queues if has_limits else own_timeout
    # One management API request per queue, at once (each may wait for its timeout).
    timeouts = await asyncio.gather(*(consumer_timeout(app, q, features) for q in checked))
    if not has_limits:
        return
    for queue, (seconds, source) in zip(checked, timeouts, strict=True):
        too_long = too_long_for_consumer_timeout(limits, seconds)
        if too_long:
            log.warning(
                "time limits longer than the broker's consumer timeout: the broker closes the "
                "channel (and redelivers its messages) before such a task is stopped",
                queue=queue,
                consumer_timeout=seconds,
                consumer_timeout_from=source,
                tasks={name: hard for name, hard in too_long},
            )
