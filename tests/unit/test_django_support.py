"""Settings namespaces, deferred discovery and shared tasks (no broker, no Django)."""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

import pytest

from amqptasks import App, ConfigError
from amqptasks.shared import shared_task

if TYPE_CHECKING:
    from pathlib import Path


class DjangoLikeSettings:
    SECRET_KEY = "s3cret"
    DEBUG = True
    AMQPTASKS_DEFAULT_QUEUE = "from-namespace"
    AMQPTASKS_TASK_MAX_RETRIES = 7
    DEFAULT_QUEUE = "not-namespaced"


def test_a_namespace_reads_only_its_prefixed_names() -> None:
    app = App("ns")
    app.config_from_object(DjangoLikeSettings(), namespace="AMQPTASKS")
    assert app.settings.default_queue == "from-namespace"
    assert app.settings.task_max_retries == 7


def test_a_module_attribute_path_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_conf")
    module.settings = DjangoLikeSettings()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_conf", module)
    app = App("ns")
    app.config_from_object("fake_conf:settings", namespace="AMQPTASKS")
    assert app.settings.default_queue == "from-namespace"
    with pytest.raises(ConfigError, match="has no 'nothing'"):
        app.config_from_object("fake_conf:nothing")


def test_autodiscovery_waits_until_the_tasks_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "discpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text(
        "from amqptasks.shared import shared_task\n@shared_task\ndef found(x):\n    return x * 2\n"
    )
    empty = tmp_path / "emptypkg"
    empty.mkdir()
    (empty / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    app = App("disc")
    app.autodiscover_tasks(["discpkg", "emptypkg"])
    assert "discpkg.tasks" not in sys.modules  # nothing imported yet
    assert "discpkg.tasks.found" in app.tasks  # a package without tasks.py is skipped
    assert app.tasks.get("discpkg.tasks.found")(4) == 8


def test_autodiscovery_of_a_missing_package_is_a_clear_error() -> None:
    app = App("disc")
    app.autodiscover_tasks(["no_such_package_here"])
    with pytest.raises(ConfigError, match="cannot import 'no_such_package_here'"):
        app.tasks.find("x")


def test_a_shared_task_binds_to_the_current_app() -> None:
    @shared_task(name="shared.double")
    def double(x: int) -> int:
        return x * 2

    first = App("first")
    assert double.name == "shared.double"
    assert double(3) == 6
    assert "shared.double" in first.tasks
    second = App("second")
    assert double.app is second  # the app made last is current
    assert "shared.double" in second.tasks


def test_a_beat_schedule_comes_from_the_namespace_too() -> None:
    schedule = {"nightly": {"task": "proj.nightly", "schedule": 3600.0}}
    settings = types.SimpleNamespace(AMQPTASKS_BEAT_SCHEDULE=schedule, BEAT_SCHEDULE="ignored")
    app = App("ns")
    app.config_from_object(settings, namespace="AMQPTASKS")
    assert app.settings.beat_schedule == schedule
