"""Settings: every group's fields in one object, from code, a settings object and the environment.

Where a setting comes from, lowest priority first:

1. built-in defaults;
2. ``App(name, broker_url=..., **settings)`` and ``app.config_from_object(obj)``;
3. environment variables ``AMQPTASKS_<NAME>`` (e.g. ``AMQPTASKS_BROKER_URL``),
   so an operator can repoint a deployed app without editing its code.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amqptasks.config.beat import BeatSettings
from amqptasks.config.broker import BrokerSettings
from amqptasks.config.content import ContentSettings
from amqptasks.config.eager import EagerSettings
from amqptasks.config.publishing import PublishSettings
from amqptasks.config.results import ResultSettings
from amqptasks.config.security import SecuritySettings
from amqptasks.config.tasks import TaskSettings
from amqptasks.config.tls import TLSSettings
from amqptasks.config.topology import TopologySettings
from amqptasks.config.worker import WorkerSettings
from amqptasks.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

ENV_PREFIX = "AMQPTASKS_"


@dataclass(frozen=True)
class Settings(
    TLSSettings,  # before BrokerSettings: it adds TLS to the broker URL
    BrokerSettings,
    TopologySettings,
    PublishSettings,
    ContentSettings,
    TaskSettings,
    ResultSettings,
    WorkerSettings,
    BeatSettings,
    EagerSettings,
    SecuritySettings,
):
    """Every App setting, with its default. See docs/configuration.md.

    Made of one group per capability (:mod:`amqptasks.config.broker`, ...):
    each brings its fields, their checks and their environment parsers, and
    they are checked in the order of these bases. A new capability's settings
    are one more group here.
    """

    @classmethod
    def build(cls, given: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
        """Merge ``given`` settings with ``AMQPTASKS_*`` variables from ``environ``.

        Raises:
            ConfigError: for an unknown name (with close matches) or a bad value.
        """
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in given.items():
            if key not in known:
                raise ConfigError(_unknown_setting(key, known))
            values[key] = value
        env = os.environ if environ is None else environ
        parsers = cls.env_parsers()
        code_only = cls.code_only()
        for key in known:
            if key in code_only:
                continue
            raw = env.get(ENV_PREFIX + key.upper())
            if raw is None:
                continue
            try:
                values[key] = parsers.get(key, str)(raw)
            except ValueError as exc:
                raise ConfigError(f"{ENV_PREFIX}{key.upper()}: {exc}") from None
        for key in ("accept_content", "queues", "worker_extensions"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        from_env = [key for key in values if ENV_PREFIX + key.upper() in env]
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None
        except ConfigError as exc:
            named = [key for key in from_env if key in str(exc)]
            if not named:
                raise
            where = ", ".join(f"{ENV_PREFIX}{key.upper()}" for key in named)
            raise ConfigError(f"{exc} (set by the environment: {where})") from None


def _unknown_setting(key: str, known: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(key, list(known), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown setting {key!r}{hint}"


def setting_default(name: str) -> Any:
    """The built-in default of setting ``name`` (for help texts)."""
    field = next(f for f in dataclasses.fields(Settings) if f.name == name)
    return field.default


def env_name(name: str) -> str:
    """The environment variable of setting ``name``: ``AMQPTASKS_<NAME>``."""
    return ENV_PREFIX + name.upper()


def settings_from_object(obj: object | str, namespace: str | None = None) -> dict[str, Any]:
    """Read settings from a module, class or object (or its import path).

    Lower-case public attributes whose names are settings are taken; upper-case
    names are accepted too (``BROKER_URL``), as in Django settings modules.
    A path may name an attribute of a module: ``"django.conf:settings"``.

    With a ``namespace`` (``"AMQPTASKS"``), only names that start with it and an
    underscore are read, without that prefix (``AMQPTASKS_BROKER_URL`` is
    ``broker_url``), as Celery's ``namespace=``: the rest of a Django settings
    module is left alone.
    """
    if isinstance(obj, str):
        module_name, _, attribute = obj.partition(":")
        try:
            obj = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"cannot import settings module {module_name!r}: {exc}") from exc
        if attribute:
            try:
                obj = getattr(obj, attribute)
            except AttributeError:
                raise ConfigError(f"settings module {module_name!r} has no {attribute!r}") from None
    known = {f.name for f in dataclasses.fields(Settings)}
    prefix = f"{namespace.lower()}_" if namespace else "amqptasks_"
    found: dict[str, Any] = {}
    for attr in dir(obj):
        if attr.startswith("_"):
            continue
        name = attr.lower()
        if name.startswith(prefix):
            name = name[len(prefix) :]
        elif namespace:
            continue
        if name in known:
            found[name] = getattr(obj, attr)
    return found
