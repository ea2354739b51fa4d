"""A starting worker's first connection: retried while no broker answers.

Celery's ``broker_connection_retry_on_startup``: a worker started before its
broker (a container starting next to RabbitMQ, a host booting) keeps trying,
with capped exponential backoff, and says so in one warning line per attempt.
A refused login is not retried: waiting does not fix a password.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from amqptasks.exceptions import BrokerUnreachable
from amqptasks.logging import get_logger
from amqptasks.transport import aio
from amqptasks.transport.reconnect import Backoff

if TYPE_CHECKING:
    import aio_pika.abc

    from amqptasks.config import BrokerURL

log = get_logger(__name__)

#: Waits between start-up attempts: 1 s, 2 s, 4 s ... up to 30 s.
STARTUP_BACKOFF = Backoff(initial=1.0, cap=30.0)


async def connect_on_startup(
    url: BrokerURL,
    connection_name: str,
    *,
    retry: bool,
    max_retries: int,
    backoff: Backoff = STARTUP_BACKOFF,
    log_outages: bool = True,
) -> aio_pika.abc.AbstractRobustConnection:
    """:func:`amqptasks.transport.aio.connect`, retried while the broker is unreachable.

    Args:
        url: The broker.
        connection_name: Shown in the management UI.
        retry: ``broker_connection_retry_on_startup``; False: fail at once.
        max_retries: Attempts after the first one before giving up (0: forever).
        backoff: The waits between attempts.
        log_outages: Passed on to :func:`~amqptasks.transport.aio.connect`.

    Raises:
        BrokerUnreachable: the last attempt's error, once retries are used up.
        AuthenticationFailed: at once (retrying does not fix credentials).
    """
    failures = 0
    while True:
        try:
            return await aio.connect(url, connection_name, log_outages=log_outages)
        except BrokerUnreachable as exc:
            failures += 1
            if not retry or (max_retries and failures > max_retries):
                raise
            wait = backoff.delay(failures)
            log.warning(
                "broker unreachable at start-up; retrying",
                error=str(exc),
                attempt=failures,
                of=max_retries or "unlimited",
                retry_in=round(wait, 1),
            )
            await asyncio.sleep(wait)
