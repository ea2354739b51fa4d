"""-Q and -X: which queues a worker consumes."""

from __future__ import annotations

import pytest

from amqptasks import App, ConfigError, Queue
from amqptasks.worker.queues import known_queues, select_queues, split_names


@pytest.fixture
def app() -> App:
    return App("qs", broker_url="amqp://guest:guest@localhost//", queues=[Queue("a"), Queue("b")])


def test_split_names() -> None:
    assert split_names(" a, b,,c ") == ["a", "b", "c"]
    assert split_names(None) == []


def test_known_queues_start_with_the_default_queue(app: App) -> None:
    assert known_queues(app) == ["default", "a", "b"]


def test_no_options_means_the_workers_default(app: App) -> None:
    assert select_queues(app, [], []) is None
    assert select_queues(app, ["x", "y"], []) == ["x", "y"]


def test_exclude_without_q_takes_the_known_queues(app: App) -> None:
    assert select_queues(app, [], ["default"]) == ["a", "b"]


def test_exclude_with_q_is_the_difference(app: App) -> None:
    assert select_queues(app, ["x", "a", "y"], ["a", "zzz"]) == ["x", "y"]


def test_excluding_everything_is_an_error(app: App) -> None:
    with pytest.raises(ConfigError, match="no queue left"):
        select_queues(app, ["a"], ["a"])
