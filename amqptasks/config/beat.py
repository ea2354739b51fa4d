"""Beat settings: the time zone, the code-declared schedule, catch-up defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from amqptasks.config._group import SettingsGroup
from amqptasks.config._parse import check_number, positive_float
from amqptasks.exceptions import ConfigError
from amqptasks.topology.model import check_name

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: Values of ``beat_catch_up`` (and of an entry's ``catch_up``).
CATCH_UP_POLICIES = ("latest", "all", "skip")


@dataclass(frozen=True)
class BeatSettings(SettingsGroup):
    """How periodic tasks are scheduled (see docs/periodic-tasks.md)."""

    #: IANA time zone of wall-clock schedules (crontab, cron strings) without their own.
    timezone: str = "UTC"
    #: Celery's ``beat_schedule``: ``{name: {"task", "schedule", "args", "kwargs",
    #: "options", ...}}``; code only.
    beat_schedule: Any = None
    #: What a new leader does with occurrences missed while no beat ran:
    #: ``latest`` (fire the most recent once), ``all`` or ``skip``; per entry ``catch_up=``.
    beat_catch_up: str = "latest"
    #: Seconds back a missed occurrence may still be caught up (per entry ``catch_up_window=``).
    beat_catch_up_window: float = 3600.0
    #: Prefix of the beat's queues on the broker (leader, history, entries).
    beat_prefix: str = "amqptasks.beat"
    #: Seconds between two "handled through" marks a leader writes to the history.
    beat_tick: float = 1.0

    ENV_PARSERS: ClassVar[Mapping[str, Callable[[str], Any]]] = {
        "beat_catch_up_window": positive_float,
        "beat_tick": positive_float,
    }
    CODE_ONLY: ClassVar[frozenset[str]] = frozenset({"beat_schedule"})

    def check(self) -> None:
        """A known time zone and policy; a window > 0; a usable prefix."""
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigError(
                f"timezone must be an IANA name such as 'Europe/Paris', got {self.timezone!r}"
            ) from None
        if self.beat_catch_up not in CATCH_UP_POLICIES:
            raise ConfigError(
                f"beat_catch_up must be one of {', '.join(CATCH_UP_POLICIES)}, "
                f"got {self.beat_catch_up!r}"
            )
        check_number("beat_catch_up_window", self.beat_catch_up_window, positive=True)
        check_number("beat_tick", self.beat_tick, positive=True)
        check_name(self.beat_prefix, "beat_prefix")
        if self.beat_schedule is not None and not hasattr(self.beat_schedule, "items"):
            raise ConfigError(
                f"beat_schedule must be a dict of entries, got {type(self.beat_schedule).__name__}"
            )
