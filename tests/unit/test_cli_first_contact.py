"""A newcomer's first commands: --help, -A discovery and its errors, Celery's option order.

Each error is one line that says what to do, with no traceback. Nothing here needs a
broker: ``topology show`` only prints what the app would declare.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from amqptasks.cli import cli

REPO = Path(__file__).resolve().parents[2]

PROJ = """
from amqptasks import App

app = App("proj")

@app.task
def add(x, y):
    return x + y
"""


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AMQPTASKS_")}
    environ.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "amqptasks", *args],
        cwd=cwd,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one ``Error:`` line and no traceback."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "proj.py").write_text(PROJ)
    return tmp_path


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("path", _commands(cli), ids=lambda p: " ".join(p) or "amqptasks")
def test_help_of_every_command_goes_to_stdout_and_exits_0(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: ")
    assert result.stderr == ""


def test_help_of_the_installed_command_exits_0(tmp_path: Path) -> None:
    for args in (("--help",), ("dev-node", "--help"), ("worker", "-h")):
        done = run(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Usage: ") and done.stderr == ""


@pytest.mark.parametrize(
    "script", [REPO / "deploy/local/rabbitmq-node", REPO / "amqptasks/testing/rabbitmq-node"]
)
@pytest.mark.parametrize("args", [["--help"], ["-h"], ["start", "--help"]])
def test_rabbitmq_node_help_prints_its_manual_to_stdout(script: Path, args: list[str]) -> None:
    done = subprocess.run(
        ["bash", str(script), *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0
    assert done.stderr == ""
    assert "rabbitmq-node start  --dir DIR" in done.stdout
    assert "Environment:" in done.stdout


def test_app_before_the_command_as_celery_spells_it(project: Path) -> None:
    done = run("-A", "proj:app", "topology", "show", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "proj.add" in done.stdout


def test_app_after_the_command_wins_over_the_one_before(project: Path) -> None:
    (project / "other.py").write_text(PROJ.replace('"proj"', '"other"'))
    done = run("-A", "proj:app", "topology", "show", "-A", "other:app", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "other.add" in done.stdout and "proj.add" not in done.stdout


def test_no_app_at_all_says_how_to_name_one(project: Path) -> None:
    line = one_error_line(run("topology", "show", cwd=project))
    assert "-A MODULE:ATTRIBUTE" in line and "AMQPTASKS_APP" in line


def test_unknown_attribute_names_the_apps_there_are(project: Path) -> None:
    line = one_error_line(run("-A", "proj:nosuch", "topology", "show", cwd=project))
    assert line == (
        "Error: module 'proj' has no attribute 'nosuch' (-A proj:nosuch); its App objects: app"
    )


def test_attribute_that_is_not_an_app(project: Path) -> None:
    line = one_error_line(run("-A", "proj:add", "topology", "show", cwd=project))
    assert "not an amqptasks App" in line and "Task" in line


def test_no_module_before_the_colon(project: Path) -> None:
    line = one_error_line(run("-A", ":app", "topology", "show", cwd=project))
    assert "names no module" in line and "-A proj:app" in line


def test_module_not_found_points_at_the_current_directory(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    line = one_error_line(run("-A", "proj:app", "topology", "show", cwd=elsewhere))
    assert "no module 'proj' in the current directory" in line
    assert str(elsewhere) in line and "PYTHONPATH" in line


def test_a_failing_import_inside_the_module_is_not_blamed_on_the_directory(
    project: Path,
) -> None:
    (project / "broken.py").write_text("import no_such_dependency_xyz\n")
    line = one_error_line(run("-A", "broken:app", "topology", "show", cwd=project))
    assert "no_such_dependency_xyz" in line and "current directory" not in line


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ({"proj/__init__.py": "", "proj/app.py": PROJ}, "proj.app.add"),
        ({"proj/__init__.py": "", "proj/amqptasks.py": PROJ}, "proj.amqptasks.add"),
        ({"proj/__init__.py": "", "proj/celery.py": PROJ}, "proj.celery.add"),
        ({"proj.py": PROJ}, "proj.add"),
        (
            {"proj.py": PROJ + "\nfrom amqptasks import App\nother = App('other')\n"},
            "proj.add",
        ),
    ],
    ids=["package/app.py", "package/amqptasks.py", "package/celery.py", "module", "two apps"],
)
def test_module_alone_finds_the_app_as_celery_does(
    tmp_path: Path, layout: dict[str, str], expected: str
) -> None:
    for name, text in layout.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    done = run("-A", "proj", "topology", "show", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout


def test_module_without_an_app_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("x = 1\n")
    line = one_error_line(run("-A", "empty", "topology", "show", cwd=tmp_path))
    assert "no amqptasks App found in module 'empty'" in line


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_broker_is_one_line_with_a_hint_and_no_library_logs(project: Path) -> None:
    url = f"amqp://guest:Sup3rS3cret@127.0.0.1:{_free_port()}//"
    done = run("call", "proj.add", "--args", "[1, 2]", "-A", "proj:app", "-b", url, cwd=project)
    line = one_error_line(done)
    assert line.startswith("Error: BrokerUnreachable: cannot connect to amqp://guest:***@")
    assert "connection refused" in line and "amqptasks dev-node start" in line
    assert done.stderr.splitlines()[-1] == line
    assert "pika" not in done.stderr and "aiormq" not in done.stderr
    assert "Sup3rS3cret" not in done.stderr


def test_unknown_host_says_the_url_is_wrong(project: Path) -> None:
    url = "amqp://guest:guest@no-such-host.invalid:5672//"
    done = run(
        "worker",
        "-A",
        "proj:app",
        "-b",
        url,
        cwd=project,
        env={"AMQPTASKS_BROKER_CONNECTION_RETRY_ON_STARTUP": "no"},
    )
    line = one_error_line(done)
    assert "host 'no-such-host.invalid' is unknown" in line


def test_worker_retries_at_start_up_then_gives_up_with_the_error(project: Path) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{_free_port()}//"
    done = run(
        "worker",
        "-A",
        "proj:app",
        "-b",
        url,
        cwd=project,
        env={"AMQPTASKS_BROKER_CONNECTION_MAX_RETRIES": "2"},
    )
    line = one_error_line(done)
    assert "connection refused" in line
    retries = [x for x in done.stderr.splitlines() if "broker unreachable at start-up" in x]
    assert len(retries) == 2, done.stderr
    assert "attempt=1" in retries[0] and "of=2" in retries[0]


def test_worker_without_start_up_retries_fails_at_once(project: Path) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{_free_port()}//"
    done = run(
        "worker",
        "-A",
        "proj:app",
        "-b",
        url,
        cwd=project,
        env={"AMQPTASKS_BROKER_CONNECTION_RETRY_ON_STARTUP": "false"},
    )
    one_error_line(done)
    assert "retrying" not in done.stderr
