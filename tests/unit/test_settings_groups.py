"""Settings grouped by capability: each group brings its fields, checks and environment parsers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from amqptasks import App
from amqptasks.config import Settings, SettingsGroup, env_name, setting_default
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
    from collections.abc import Callable, Mapping

GROUPS = (
    BrokerSettings,
    TLSSettings,
    TopologySettings,
    PublishSettings,
    ContentSettings,
    TaskSettings,
    ResultSettings,
    WorkerSettings,
    BeatSettings,
    EagerSettings,
    SecuritySettings,
)


def _own_fields(group: type[SettingsGroup]) -> set[str]:
    inherited = {f.name for base in group.__bases__ for f in dataclasses.fields(base)}
    return {f.name for f in dataclasses.fields(group)} - inherited


def test_every_setting_belongs_to_exactly_one_group() -> None:
    owned = [name for group in GROUPS for name in _own_fields(group)]
    assert len(owned) == len(set(owned))
    assert set(owned) == {f.name for f in dataclasses.fields(Settings)}


def test_settings_keep_every_attribute_and_app_keyword() -> None:
    app = App("t", broker_url="amqp://guest:guest@127.0.0.1:1//", worker_prefetch_multiplier=16)
    assert app.settings.worker_prefetch_multiplier == 16
    assert isinstance(app.settings, WorkerSettings)


@pytest.mark.parametrize(
    ("group", "values", "match"),
    [
        (WorkerSettings, {"worker_pool": "gevent"}, "worker_pool must be one of"),
        (TopologySettings, {"topology_mode": "yolo"}, "topology_mode must be one of"),
        (PublishSettings, {"publish_retry_max_retries": -1}, "publish_retry_max_retries"),
        (ContentSettings, {"task_serializer": "xml"}, "xml"),
        (TaskSettings, {"task_time_limit": 0}, "task_time_limit"),
        (ResultSettings, {"result_expires": 0}, "result_expires"),
        (BrokerSettings, {"broker_url": "http://x"}, "scheme"),
    ],
)
def test_each_group_checks_its_own_fields(
    group: type[SettingsGroup], values: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        group(**values)
    with pytest.raises(ConfigError, match=match):
        Settings(**values)


@dataclass(frozen=True)
class BeatSettings(SettingsGroup):
    """A capability arriving later: one group, nothing else edited."""

    beat_max_loop_interval: float = 300.0
    beat_schedule: Any = None

    ENV_PARSERS: ClassVar[Mapping[str, Callable[[str], Any]]] = {"beat_max_loop_interval": float}
    CODE_ONLY: ClassVar[frozenset[str]] = frozenset({"beat_schedule"})

    def check(self) -> None:
        if not self.beat_max_loop_interval > 0:
            raise ConfigError("beat_max_loop_interval must be > 0")


@dataclass(frozen=True)
class SettingsWithBeat(Settings, BeatSettings):
    """What ``Settings`` becomes when the beat group is added to its bases."""


def test_a_new_group_brings_its_environment_parser_and_check() -> None:
    env = {env_name("beat_max_loop_interval"): "5", env_name("beat_schedule"): "ignored"}
    settings = SettingsWithBeat.build({}, environ=env)
    assert settings.beat_max_loop_interval == 5.0
    assert settings.beat_schedule is None  # code only
    assert settings.worker_prefetch_multiplier == setting_default("worker_prefetch_multiplier")
    with pytest.raises(ConfigError, match="beat_max_loop_interval must be > 0"):
        SettingsWithBeat.build({"beat_max_loop_interval": 0}, environ={})
    with pytest.raises(ConfigError, match="AMQPTASKS_BEAT_MAX_LOOP_INTERVAL"):
        SettingsWithBeat.build({}, environ={env_name("beat_max_loop_interval"): "soon"})


def test_cli_help_shows_the_defaults_settings_hold() -> None:
    from click.testing import CliRunner

    from amqptasks.cli import cli

    out = CliRunner().invoke(cli, ["worker", "--help"], terminal_width=400).output
    assert f"AMQPTASKS_WORKER_POOL, default {setting_default('worker_pool')})" in out
    assert (
        "AMQPTASKS_WORKER_PREFETCH_MULTIPLIER, "
        f"default {setting_default('worker_prefetch_multiplier')})" in out
    )
    assert f"default {setting_default('worker_shutdown_timeout'):g})" in out
    assert f"AMQPTASKS_WORKER_PROCESSES, default {setting_default('worker_processes')})" in out


def test_cli_sources_write_no_setting_default_by_hand() -> None:
    import re
    from pathlib import Path

    import amqptasks.cli

    folder = Path(amqptasks.cli.__file__).parent
    by_hand = [
        f"{path.name}: {match.group(0)}"
        for path in sorted(folder.glob("*.py"))
        for match in re.finditer(r"AMQPTASKS_[A-Z_]+, default [^)\"]+", path.read_text())
    ]
    assert by_hand == []
