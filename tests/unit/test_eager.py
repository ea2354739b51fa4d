"""Eager mode: tasks run in-process as a worker would run them, with no broker.

The app points at a port nobody listens on: any attempt to publish would fail.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from amqptasks import App, Reject, states
from amqptasks.exceptions import ConfigError
from amqptasks.testing import eager_mode

if TYPE_CHECKING:
    from pathlib import Path


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"amqp://guest:guest@127.0.0.1:{sock.getsockname()[1]}//"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> App:
    for name in list(os.environ):
        if name.startswith("AMQPTASKS_"):
            monkeypatch.delenv(name)
    return App("proj", broker_url=_closed_port_url(), task_always_eager=True)


def test_delay_runs_the_task_and_the_result_is_ready(app: App) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    result = add.delay(2, 3)
    assert result.state == states.SUCCESS and result.ready()
    assert result.get(timeout=1) == 5


def test_arguments_and_results_make_the_serialization_round_trip(app: App) -> None:
    seen: list[Any] = []

    @app.task
    def echo(value: Any) -> Any:
        seen.append(value)
        return (value, "done")

    result = echo.delay((1, 2))
    assert seen == [[1, 2]]  # a tuple arrives as a JSON list, as on a worker
    assert result.get() == [[1, 2], "done"]


def test_unserializable_arguments_are_refused_as_when_publishing(app: App) -> None:
    @app.task
    def take(value: Any) -> None: ...

    with pytest.raises(TypeError) as eager:
        take.delay(object())
    app.config_from_object(type("Off", (), {"task_always_eager": False}))
    with pytest.raises(TypeError) as published:
        take.delay(object())  # refused before any connection, the same way
    assert str(eager.value) == str(published.value)


def test_unserializable_result_is_a_failure_as_on_a_worker(app: App) -> None:
    @app.task
    def give() -> object:
        return object()

    result = give.delay()
    assert result.state == states.FAILURE
    with pytest.raises(TypeError, match="cannot be serialized"):
        result.get()


def test_autoretry_retries_until_it_succeeds(app: App) -> None:
    attempts: list[int] = []

    @app.task(bind=True, autoretry_for=(KeyError,), max_retries=3, retry_backoff=False)
    def flaky(self: Any) -> str:
        attempts.append(self.request.retries)
        if len(attempts) < 3:
            raise KeyError("not yet")
        return f"ok after {self.request.retries} retries on {self.request.hostname}"

    assert flaky.delay().get() == "ok after 2 retries on eager"
    assert attempts == [0, 1, 2]


def test_self_retry_keeps_the_task_id(app: App) -> None:
    ids: list[str] = []

    @app.task(bind=True, max_retries=2)
    def again(self: Any) -> int:
        ids.append(self.request.id)
        if self.request.retries < 2:
            raise self.retry(countdown=60)  # not waited for in eager mode
        return self.request.retries

    result = again.delay()
    assert result.get() == 2
    assert ids == [result.id] * 3


def test_exhausted_retries_end_in_failure_and_get_raises(app: App) -> None:
    @app.task(autoretry_for=(ValueError,), max_retries=1, retry_backoff=False)
    def broken() -> None:
        raise ValueError("always")

    result = broken.delay()
    assert result.state == states.FAILURE
    with pytest.raises(ValueError, match="always"):
        result.get()


def test_eager_propagates_raises_at_the_call(app: App) -> None:
    @app.task
    def reject() -> None:
        raise Reject("no")

    @app.task
    def divide(x: int, y: int) -> float:
        return x / y

    with eager_mode(app, propagates=True):
        with pytest.raises(ZeroDivisionError):
            divide.delay(1, 0)
        with pytest.raises(Reject):
            reject.delay()
    # The block's end puts the settings back: failures are results again.
    assert app.settings.task_eager_propagates is False
    assert divide.delay(1, 0).state == states.FAILURE


def test_async_tasks_and_adelay(app: App) -> None:
    @app.task
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    assert double.delay(21).get() == 42

    async def main() -> Any:
        result = await double.adelay(4)
        return await result.aget(timeout=1)

    assert asyncio.run(main()) == 8


def test_workflows_are_refused_with_one_line(app: App) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(ConfigError, match="cannot run workflows"):
        add.apply_async((1, 2), link=add.s(3))


def test_off_by_default() -> None:
    assert App("x").settings.task_always_eager is False


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQPTASKS_TASK_ALWAYS_EAGER", "true")
    monkeypatch.setenv("AMQPTASKS_TASK_EAGER_PROPAGATES", "1")
    settings = App("x").settings
    assert settings.task_always_eager and settings.task_eager_propagates


CONFTEST = """
import pytest

pytest_plugins = ["amqptasks.testing.pytest_plugin"]


@pytest.fixture
def amqptasks_app():
    from proj import app
    return app
"""

PROJ = """
from amqptasks import App

app = App("proj", broker_url="amqp://guest:guest@127.0.0.1:1//")


@app.task
def add(x, y):
    return x + y


@app.task
def divide(x, y):
    return x / y
"""

USER_TESTS = """
import pytest

from proj import add, divide


def test_add(eager_app):
    assert add.delay(2, 3).get(timeout=1) == 5


def test_divide_by_zero_raises_at_the_call(eager_app):
    with pytest.raises(ZeroDivisionError):
        divide.delay(1, 0)
"""


def test_the_pytest_fixture_in_a_users_project(tmp_path: Path) -> None:
    (tmp_path / "proj.py").write_text(PROJ)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_proj.py").write_text(USER_TESTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQPTASKS_", "PYTEST_"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
