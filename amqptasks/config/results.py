"""Result settings: how long a client's reply queue outlives its last use."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from amqptasks import constants
from amqptasks.config._group import SettingsGroup
from amqptasks.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


@dataclass(frozen=True)
class ResultSettings(SettingsGroup):
    """Results (the rpc backend: replies on a queue per client)."""

    #: Seconds a reply queue outlives its client's last consumer (its ``x-expires``).
    result_expires: float = constants.DEFAULT_RESULT_EXPIRES

    ENV_PARSERS: ClassVar[Mapping[str, Callable[[str], Any]]] = {"result_expires": float}

    def check(self) -> None:
        """A lifetime > 0."""
        value = self.result_expires
        if not isinstance(value, int | float) or not value > 0 or math.isinf(value):
            raise ConfigError(f"result_expires must be a number > 0, got {value!r}")
