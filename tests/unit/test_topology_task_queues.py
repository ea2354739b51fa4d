"""``topology show|diff|apply|export`` see the queues named only on a task, and their DLQs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from click.testing import CliRunner

from amqptasks import App, Queue
from amqptasks.cli import cli

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def make_app() -> App:
    app = App("proj", queues=[Queue("reports")])

    @app.task(queue="mail")
    def send(address: str) -> None: ...

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    return app


def test_declarations_include_task_queues_and_their_dead_letter_queues() -> None:
    names = [q.name for q in make_app().declarations().queues]
    assert {"reports", "reports.dlq", "mail", "mail.dlq", "default", "default.dlq"} <= set(names)
    assert names.index("reports") < names.index("mail")  # defined queues first


def test_a_queue_named_on_a_task_and_defined_is_listed_once() -> None:
    app = App("proj", queues=[Queue("mail", max_priority=5)])

    @app.task(queue="mail")
    def send(address: str) -> None: ...

    mail = [q for q in app.declarations().queues if q.name == "mail"]
    assert len(mail) == 1 and mail[0].arguments.get("x-max-priority") == 5


def test_an_app_without_tasks_or_queues_declares_its_default_queue() -> None:
    assert [q.name for q in App("bare").declarations().queues] == ["default.dlq", "default"]


def test_topology_export_lists_the_task_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mailproj.py").write_text(
        "from amqptasks import App\napp = App('p')\n@app.task(queue='mail')\ndef send(a): ...\n"
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["-A", "mailproj:app", "topology", "export"])
    assert result.exit_code == 0, result.output
    assert '"name": "mail.dlq"' in result.stdout and '"name": "mail"' in result.stdout
