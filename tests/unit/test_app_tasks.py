"""App construction, the @app.task decorator and the task registry (no broker)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from amqptasks import App, Task
from amqptasks.exceptions import ConfigError, UnknownTask
from amqptasks.registry import TaskRegistry

URL = "amqp://guest:guest@127.0.0.1:1//"


@pytest.fixture
def app() -> App:
    return App("t", broker_url=URL)


def test_app_construction_and_decoration_do_no_network_io(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("network I/O attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)

    app = App("t", broker_url="amqp://guest:guest@rabbit.invalid:5672//")

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    assert add(2, 3) == 5
    assert app.settings.broker.host == "rabbit.invalid"


def test_app_settings_from_keywords_and_config_source() -> None:
    class Config:
        default_queue = "from-object"
        task_serializer = "msgpack"

    app = App("t", broker_url=URL, config_source=Config, task_serializer="yaml")
    assert app.settings.default_queue == "from-object"
    assert app.settings.task_serializer == "yaml"  # keywords win over the object
    assert app.settings.broker.port == 1


def test_app_refuses_unknown_setting() -> None:
    with pytest.raises(ConfigError, match="did you mean default_queue"):
        App("t", broker_url=URL, default_queu="x")


def test_app_repr_hides_the_password() -> None:
    app = App("t", broker_url="amqp://alice:Zq8-appSecret@h//")
    assert "Zq8-appSecret" not in repr(app)
    assert "alice" in repr(app)


def test_config_from_object_updates_settings(app: App) -> None:
    class Later:
        DEFAULT_QUEUE = "later"

    app.config_from_object(Later)
    assert app.settings.default_queue == "later"
    assert app.settings.broker.port == 1


def test_default_task_name_is_module_and_function(app: App) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    assert isinstance(add, Task)
    assert add.name == f"{__name__}.add"
    assert app.tasks.get(f"{__name__}.add") is add
    assert add.__name__ == "add"


def test_main_module_tasks_are_named_after_the_app(app: App) -> None:
    def report() -> None:
        return None

    report.__module__ = "__main__"
    assert app.task(report).name == "t.report"


def test_name_override(app: App) -> None:
    @app.task(name="billing.charge", queue="payments")
    def charge(amount: int) -> int:
        return amount

    assert charge.name == "billing.charge"
    assert charge.queue == "payments"
    assert "billing.charge" in app.tasks
    assert f"{__name__}.charge" not in app.tasks


def test_decorator_with_empty_parentheses(app: App) -> None:
    @app.task()
    def ping() -> str:
        return "pong"

    assert ping.name == f"{__name__}.ping"
    assert ping() == "pong"


def test_unknown_task_option_fails_at_decoration_time(app: App) -> None:
    with pytest.raises(ConfigError, match="retries"):

        @app.task(retries=3)
        def add(x: int, y: int) -> int:
            return x + y

    assert len(app.tasks) == 0


def test_pickle_serializer_needs_accept_content(app: App) -> None:
    with pytest.raises(ConfigError, match="pickle"):

        @app.task(serializer="pickle")
        def add(x: int, y: int) -> int:
            return x + y


def test_pickle_serializer_allowed_when_accepted() -> None:
    app = App("t", broker_url=URL, accept_content=("json", "pickle"))

    @app.task(serializer="pickle")
    def add(x: int, y: int) -> int:
        return x + y

    assert add.serializer == "pickle"


def test_unknown_compression_fails_at_decoration_time(app: App) -> None:
    with pytest.raises(ConfigError, match="snappy"):

        @app.task(compression="snappy")
        def add(x: int, y: int) -> int:
            return x + y


def test_calling_a_task_runs_it_locally(app: App) -> None:
    calls: list[tuple[int, int]] = []

    @app.task
    def add(x: int, y: int) -> int:
        calls.append((x, y))
        return x + y

    assert add(2, y=3) == 5
    assert calls == [(2, 3)]


def test_bound_task_gets_itself_first(app: App) -> None:
    @app.task(bind=True)
    def whoami(self: Task[Any, Any], x: int) -> tuple[object, int, bool]:
        return self, x, self.request.is_eager

    me, x, eager = whoami(5)
    assert me is whoami
    assert x == 5
    assert eager is True


async def test_async_task_is_marked_and_runs_locally(app: App) -> None:
    @app.task
    async def fetch(x: int) -> int:
        return x * 2

    assert fetch.is_async is True
    assert await fetch(4) == 8


def test_apply_async_refuses_unknown_options_before_sending(app: App) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(TypeError, match="prioritee"):
        add.apply_async((1, 2), prioritee=1)  # type: ignore[call-arg]


def test_duplicate_task_name_is_refused(app: App) -> None:
    @app.task(name="jobs.run")
    def first() -> int:
        return 1

    with pytest.raises(ConfigError, match=r"jobs\.run"):

        @app.task(name="jobs.run")
        def second() -> int:
            return 2

    assert app.tasks.get("jobs.run") is first


def test_registering_the_same_function_again_is_allowed(app: App) -> None:
    def job() -> int:
        return 1

    app.task(job)
    again = app.task(job)
    assert app.tasks.get(again.name) is again
    assert len(app.tasks) == 1


def test_unknown_task_suggests_close_names(app: App) -> None:
    @app.task(name="proj.tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(UnknownTask) as info:
        app.tasks.get("proj.tasks.ad")
    assert info.value.name == "proj.tasks.ad"
    assert info.value.suggestions == ["proj.tasks.add"]
    assert "did you mean 'proj.tasks.add'" in str(info.value)


def test_unknown_task_without_close_names() -> None:
    with pytest.raises(UnknownTask) as info:
        TaskRegistry().get("nothing.like.it")
    assert info.value.suggestions == []
    assert "did you mean" not in str(info.value)


def test_registry_listing(app: App) -> None:
    @app.task(name="b.task")
    def b() -> None:
        return None

    @app.task(name="a.task")
    def a() -> None:
        return None

    assert list(app.tasks) == ["a.task", "b.task"]
    assert len(app.tasks) == 2
    assert app.tasks.find("a.task") is a
    assert app.tasks.find("c.task") is None


class Audited(Task[Any, Any]):
    """A base class as a Celery user writes one: shared behaviour for several tasks."""

    audited: list[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.audited = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.audited.append(self.name)
        return super().__call__(*args, **kwargs)


def test_a_task_is_made_from_the_base_class_given() -> None:
    app = App("t", broker_url=URL)

    @app.task(base=Audited, name="proj.double", queue="math")
    def double(x: int) -> int:
        return 2 * x

    assert type(double) is Audited
    assert double(4) == 8
    assert double.audited == ["proj.double"]
    assert double.queue == "math"
    assert app.tasks.get("proj.double") is double


def test_a_bound_task_of_a_base_class_gets_itself() -> None:
    app = App("t", broker_url=URL)

    @app.task(base=Audited, bind=True)
    def whoami(self: Task[Any, Any]) -> str:
        return type(self).__name__

    assert whoami() == "Audited"


@pytest.mark.parametrize("base", [int, "Audited", Audited("x", lambda: None, name="x")])
def test_a_base_that_is_not_a_task_class_is_refused(base: Any) -> None:
    app = App("t", broker_url=URL)
    with pytest.raises(ConfigError, match=r"base must be a subclass of amqptasks\.Task"):
        app.task(base=base)
