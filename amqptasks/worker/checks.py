"""Start-up checks of a worker's settings against the broker's (logs warnings only)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from amqptasks.logging import get_logger
from amqptasks.worker.timelimits import (
    consumer_timeout_from_management,
    too_long_for_consumer_timeout,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from amqptasks.app import App

log = get_logger(__name__)


async def consumer_timeout(app: App, queue: str) -> tuple[float, str]:
    """The consumer timeout (s) that applies to ``queue``, and where it was read.

    RabbitMQ 3.12+ shows a queue's own timeout (``x-consumer-timeout`` argument,
    ``consumer-timeout`` policy) in the management API; the node-wide
    ``consumer_timeout`` is not shown there by 3.10 (nor later), so it comes from
    the ``broker_consumer_timeout`` setting.
    """
    management = app.management()
    found = await asyncio.get_running_loop().run_in_executor(None, management.queue, queue)
    seconds = consumer_timeout_from_management(found)
    if seconds is not None:
        return seconds, "management API (queue argument or policy)"
    return app.settings.broker_consumer_timeout, "setting broker_consumer_timeout"


async def warn_about_long_time_limits(
    app: App, queues: Sequence[str], worker_hard_limit: float | None
) -> None:
    """Warn about tasks whose hard time limit the broker's consumer timeout would cut.

    RabbitMQ closes the channel of a consumer that keeps a delivery unacked
    longer than its consumer timeout (default 30 min) and redelivers every
    unacked message of that channel; a longer time limit is never reached.
    https://www.rabbitmq.com/docs/consumers#acknowledgement-timeout
    """
    tasks = [app.tasks.get(name) for name in app.tasks]
    limits = [
        (task.name, task.time_limit if task.time_limit is not None else worker_hard_limit)
        for task in tasks
    ]
    if not any(hard is not None for _, hard in limits):
        return
    # One management API request per queue, at once (each may wait for its timeout).
    timeouts = await asyncio.gather(*(consumer_timeout(app, queue) for queue in queues))
    for queue, (seconds, source) in zip(queues, timeouts, strict=True):
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
