"""The names ``import amqptasks`` offers."""

from __future__ import annotations

import importlib.metadata
import inspect

import amqptasks
from amqptasks import exceptions
from amqptasks.app import App
from amqptasks.config import BrokerURL, Settings
from amqptasks.results.result import AsyncResult
from amqptasks.task import Task
from amqptasks.worker.worker import Worker


def _exception_classes() -> dict[str, type[BaseException]]:
    return {
        name: obj
        for name, obj in vars(exceptions).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == exceptions.__name__
    }


def test_all_is_sorted_without_duplicates() -> None:
    assert amqptasks.__all__ == sorted(amqptasks.__all__)
    assert len(amqptasks.__all__) == len(set(amqptasks.__all__))


def test_every_name_in_all_exists() -> None:
    missing = [name for name in amqptasks.__all__ if not hasattr(amqptasks, name)]
    assert missing == []


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from amqptasks import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(amqptasks.__all__)


def test_main_classes_are_exported() -> None:
    expected = {
        "App": App,
        "Task": Task,
        "AsyncResult": AsyncResult,
        "Worker": Worker,
        "BrokerURL": BrokerURL,
        "Settings": Settings,
    }
    for name, obj in expected.items():
        assert name in amqptasks.__all__, name
        assert getattr(amqptasks, name) is obj, name
    assert "PublishOptions" in amqptasks.__all__
    assert "states" in amqptasks.__all__
    assert amqptasks.states.SUCCESS == "SUCCESS"


def test_every_exception_class_is_exported() -> None:
    classes = _exception_classes()
    assert "AmqptasksError" in classes  # the discovery works
    assert len(classes) >= 20
    not_exported = sorted(set(classes) - set(amqptasks.__all__))
    assert not_exported == []
    for name, cls in classes.items():
        assert getattr(amqptasks, name) is cls


def test_every_exception_derives_from_the_root() -> None:
    for name, cls in _exception_classes().items():
        assert issubclass(cls, amqptasks.AmqptasksError), name


def test_version_matches_the_installed_distribution() -> None:
    assert amqptasks.__version__ == importlib.metadata.version("amqptasks")


def test_signals_module_is_exported() -> None:
    assert "signals" in amqptasks.__all__
    assert amqptasks.signals.task_failure.name == "task_failure"
