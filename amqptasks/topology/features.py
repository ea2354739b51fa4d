"""What a RabbitMQ version offers that amqptasks uses or avoids (pure).

The version is read from the broker (the ``version`` AMQP server property, or
``rabbitmq_version`` from the management API), never assumed from a setting.
An unknown version gives no :class:`BrokerFeatures`: callers then keep the
behaviour every supported broker (3.10 and later) has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class BrokerFeatures:
    """The features of one RabbitMQ version that change what amqptasks does.

    Args:
        version: ``(major, minor, patch)``.
    """

    version: tuple[int, int, int]

    @classmethod
    def parse(cls, version: str | bytes | None) -> BrokerFeatures | None:
        """Features of the version named by ``version`` (``"4.0.5"``), or None if unknown."""
        if isinstance(version, bytes):
            version = version.decode(errors="replace")
        if not version:
            return None
        match = _VERSION.match(version.strip())
        if match is None:
            return None
        major, minor, patch = match.groups()
        return cls((int(major), int(minor), int(patch or 0)))

    def __str__(self) -> str:
        return ".".join(str(part) for part in self.version)

    @property
    def per_queue_consumer_timeout(self) -> bool:
        """3.12+: ``x-consumer-timeout`` (and the ``consumer-timeout`` policy) apply.

        Older brokers store the argument but ignore it; their node-wide
        ``consumer_timeout`` applies to every queue.
        https://www.rabbitmq.com/docs/consumers#per-queue-delivery-timeouts-using-an-optional-queue-argument
        """
        return self.version >= (3, 12, 0)

    @property
    def quorum_priorities(self) -> bool:
        """4.0+: quorum queues deliver priority 5-255 messages before 0-4 ones.

        No argument is declared for it (``x-max-priority`` is refused on a quorum
        queue by every version). https://www.rabbitmq.com/docs/quorum-queues#priorities
        """
        return self.version >= (4, 0, 0)
