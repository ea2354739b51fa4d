"""Topology settings: the app's queues and routes, defaults for queues, the delay levels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from amqptasks import constants
from amqptasks.config._group import SettingsGroup
from amqptasks.exceptions import ConfigError
from amqptasks.topology.model import DECLARE_MODES, QUEUE_TYPES, check_name


@dataclass(frozen=True)
class TopologySettings(SettingsGroup):
    """What the app declares on the broker, and how."""

    #: Queue for tasks that name none.
    default_queue: str = constants.DEFAULT_QUEUE
    #: Exchange for queues with no ``exchange=`` ("" = the AMQP default exchange).
    default_exchange: str = ""
    #: ``classic`` or ``quorum``, for queues that do not say.
    default_queue_type: str = "classic"
    #: ``declare`` (create what is missing, report mismatches), ``passive``
    #: (only check that it exists) or ``off``.
    topology_mode: str = "declare"
    #: Prefix of the shared delay exchanges and queues.
    delay_prefix: str = "amqptasks.delay"
    #: ``classic`` or ``quorum`` (at-least-once dead-lettering) delay queues.
    delay_queue_type: str = "classic"
    #: The app's queues (:class:`~amqptasks.topology.model.Queue`); code only.
    queues: tuple[Any, ...] = ()
    #: Task routes (see :mod:`amqptasks.routing`); code only.
    routes: Any = None

    CODE_ONLY: ClassVar[frozenset[str]] = frozenset({"queues", "routes"})

    def check(self) -> None:
        """Known queue types and mode; usable names."""
        if self.default_queue_type not in QUEUE_TYPES:
            raise ConfigError(
                f"default_queue_type must be one of {', '.join(QUEUE_TYPES)}, "
                f"got {self.default_queue_type!r}"
            )
        if self.topology_mode not in DECLARE_MODES:
            raise ConfigError(
                f"topology_mode must be one of {', '.join(DECLARE_MODES)}, "
                f"got {self.topology_mode!r}"
            )
        check_name(self.default_queue, "default_queue")
        check_name(self.delay_prefix, "delay_prefix")
        if len(self.delay_prefix.encode()) > 200:  # room for ".level.NN" and hop names
            raise ConfigError(
                f"delay_prefix must be at most 200 bytes, got {len(self.delay_prefix.encode())}"
            )
        if self.delay_queue_type not in QUEUE_TYPES:
            raise ConfigError(
                f"delay_queue_type must be one of {', '.join(QUEUE_TYPES)}, "
                f"got {self.delay_queue_type!r}"
            )
        check_name(self.default_exchange, "default_exchange", allow_empty=True)
