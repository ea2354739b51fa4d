"""amqptasks: a RabbitMQ-first task toolkit speaking Celery's message protocol.

Only re-exports live here; see the modules for the code.
"""

from __future__ import annotations

__version__ = "0.1.0"

from amqptasks import signals
from amqptasks.app import App
from amqptasks.beat import at, crontab, every, periodic
from amqptasks.canvas import Signature, chain, chord, group, signature
from amqptasks.config import BrokerURL, Settings
from amqptasks.exceptions import (
    AccessRefused,
    AmqptasksError,
    AuthenticationFailed,
    BadSignature,
    BatchPublishError,
    BrokerError,
    BrokerUnreachable,
    ChannelError,
    ChordError,
    ConfigError,
    ConnectionLost,
    DecodeError,
    MessageError,
    NotFound,
    PublishNotConfirmed,
    Reject,
    RemoteTaskError,
    ResultTimeout,
    Retry,
    SoftTimeLimitExceeded,
    TaskError,
    Terminated,
    TimeLimitExceeded,
    TLSError,
    TopologyMismatch,
    UnknownTask,
    Unroutable,
    WorkerLost,
)
from amqptasks.publishing import PublishOptions
from amqptasks.results import states
from amqptasks.results.group import GroupResult
from amqptasks.results.result import AsyncResult
from amqptasks.routing import Router
from amqptasks.task import Task
from amqptasks.topology.model import Binding, Exchange, Queue
from amqptasks.worker import Worker

__all__ = [
    "AccessRefused",
    "AmqptasksError",
    "App",
    "AsyncResult",
    "AuthenticationFailed",
    "BadSignature",
    "BatchPublishError",
    "Binding",
    "BrokerError",
    "BrokerURL",
    "BrokerUnreachable",
    "ChannelError",
    "ChordError",
    "ConfigError",
    "ConnectionLost",
    "DecodeError",
    "Exchange",
    "GroupResult",
    "MessageError",
    "NotFound",
    "PublishNotConfirmed",
    "PublishOptions",
    "Queue",
    "Reject",
    "RemoteTaskError",
    "ResultTimeout",
    "Retry",
    "Router",
    "Settings",
    "Signature",
    "SoftTimeLimitExceeded",
    "TLSError",
    "Task",
    "TaskError",
    "Terminated",
    "TimeLimitExceeded",
    "TopologyMismatch",
    "UnknownTask",
    "Unroutable",
    "Worker",
    "WorkerLost",
    "__version__",
    "at",
    "chain",
    "chord",
    "crontab",
    "every",
    "group",
    "periodic",
    "signals",
    "signature",
    "states",
]
