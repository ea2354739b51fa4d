"""Settings and the broker URL, validated early with errors that say what to fix.

One settings group per capability (``broker``, ``topology``, ``publishing``,
``content``, ``tasks``, ``results``, ``worker``, ``beat``), composed into :class:`Settings`.
"""

from __future__ import annotations

from amqptasks.config._group import SettingsGroup
from amqptasks.config.beat import CATCH_UP_POLICIES
from amqptasks.config.broker import URL_PARAMETERS, BrokerURL
from amqptasks.config.settings import (
    ENV_PREFIX,
    Settings,
    env_name,
    setting_default,
    settings_from_object,
)
from amqptasks.config.worker import WORKER_POOLS

__all__ = [
    "CATCH_UP_POLICIES",
    "ENV_PREFIX",
    "URL_PARAMETERS",
    "WORKER_POOLS",
    "BrokerURL",
    "Settings",
    "SettingsGroup",
    "env_name",
    "setting_default",
    "settings_from_object",
]
