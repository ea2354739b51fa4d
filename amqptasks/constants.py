"""Names and defaults shared by every layer.

Header names, property values and defaults live here so that no other module
spells a magic string twice.
"""

from __future__ import annotations

from typing import Final

#: Prefix of every header amqptasks adds to a Celery v2 message.
HEADER_PREFIX: Final = "x-amqptasks-"
#: Why a message was dead-lettered (``unknown-task``, ``decode-error``, ...).
HEADER_REASON: Final = "x-amqptasks-reason"
#: The error text that goes with :data:`HEADER_REASON`.
HEADER_ERROR: Final = "x-amqptasks-error"
#: Exception type name when a task failed.
HEADER_EXC_TYPE: Final = "x-amqptasks-exc-type"
#: The worker that dead-lettered a message.
HEADER_WORKER: Final = "x-amqptasks-worker"
#: Where the message was first published (exchange and routing key).
HEADER_ORIGINAL_EXCHANGE: Final = "x-amqptasks-original-exchange"
HEADER_ORIGINAL_ROUTING_KEY: Final = "x-amqptasks-original-routing-key"
#: When (ISO 8601, UTC) a message was dead-lettered.
HEADER_DEAD_LETTERED_AT: Final = "x-amqptasks-dead-lettered-at"

#: The failed attempt's traceback (truncated).
HEADER_TRACEBACK: Final = "x-amqptasks-traceback"
#: How many times the task ran before it was dead-lettered.
HEADER_ATTEMPTS: Final = "x-amqptasks-attempts"
#: Deliveries of a message on a classic queue (crashed workers), kept across requeues.
HEADER_DELIVERIES: Final = "x-amqptasks-deliveries"
#: Set by RabbitMQ on quorum queue redeliveries.
HEADER_QUORUM_DELIVERY_COUNT: Final = "x-delivery-count"
#: One publish of a call that may be published again with the same task id (the outbox
#: relay's): unique per publish, kept on every copy the worker makes (no ``x-amqptasks-``
#: prefix, which copies drop). The worker runs the first publish of a task id only.
HEADER_PUBLISH_ID: Final = "x-publish-id"

#: Reasons carried in :data:`HEADER_REASON`.
REASON_UNKNOWN_TASK: Final = "unknown-task"
REASON_DECODE_ERROR: Final = "decode-error"
REASON_BAD_MESSAGE: Final = "bad-message"
#: Over ``max_message_size``, or inflates to more than ``max_inflated_size``.
REASON_TOO_LARGE: Final = "too-large"
REASON_MAX_RETRIES: Final = "max-retries-exceeded"
REASON_REJECTED: Final = "rejected"
REASON_FAILED: Final = "failed"
REASON_DELIVERY_LIMIT: Final = "delivery-limit"
REASON_UNSUPPORTED: Final = "unsupported-workflow"
REASON_TIME_LIMIT: Final = "time-limit"
#: An ETA or countdown further ahead than the delay levels reach.
REASON_BAD_ETA: Final = "bad-eta"
#: The worker could not handle the message (a worker extension failed, say).
REASON_WORKER_ERROR: Final = "worker-error"
#: Unsigned where signatures are required, signed by an unknown key, or altered.
REASON_BAD_SIGNATURE: Final = "bad-signature"
#: A signed message seen before, or signed longer ago than the replay window.
REASON_REPLAYED: Final = "replayed"

DEFAULT_BROKER_URL: Final = "amqp://guest:guest@localhost:5672//"
DEFAULT_QUEUE: Final = "default"
#: The AMQP default exchange: routes by queue name.
DEFAULT_EXCHANGE: Final = ""
DEFAULT_SERIALIZER: Final = "json"
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
DEFAULT_HEARTBEAT: Final = 30
DEFAULT_PUBLISH_TIMEOUT: Final = 15.0
DEFAULT_PREFETCH_MULTIPLIER: Final = 4
DEFAULT_SHUTDOWN_TIMEOUT: Final = 30.0
#: RabbitMQ's default ``consumer_timeout`` (30 min), in seconds.
DEFAULT_BROKER_CONSUMER_TIMEOUT: Final = 1800.0
#: A reply queue is deleted by the broker this many seconds after its client stopped
#: consuming it (the client process ended, or lost its connection and did not come back).
DEFAULT_RESULT_EXPIRES: Final = 60.0
#: How many finished results a client keeps for ``get()`` calls not yet made.
RESULT_BUFFER_SIZE: Final = 10_000

#: Default ``max_message_size``: RabbitMQ 4's own default ``max_message_size`` (16 MiB).
DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
#: Default ``max_inflated_size``: the largest body a compressed message may inflate to.
DEFAULT_MAX_INFLATED_SIZE: Final = 64 * 1024 * 1024

#: AMQP delivery mode 2: the broker writes the message to disk.
PERSISTENT: Final = 2

LANG: Final = "py"
