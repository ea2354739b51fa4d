"""``amqptasks multi`` without a broker: node names, per-node options, paths, stale pid files."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from amqptasks.cli import cli
from amqptasks.multi import MultiUsageError, expand, parse_nodes
from amqptasks.multi.pidfile import alive, read_pid

if TYPE_CHECKING:
    from pathlib import Path


def test_names_count_and_host(tmp_path: Path) -> None:
    nodes = parse_nodes(["w1", "mail@%h", "beat@box2"], cwd=tmp_path, host="box.example.org")
    assert [n.name for n in nodes] == ["w1@box.example.org", "mail@box.example.org", "beat@box2"]
    assert [n.name for n in parse_nodes(["3"], host="h")] == ["w1@h", "w2@h", "w3@h"]


def test_default_pid_and_log_files_are_celerys(tmp_path: Path) -> None:
    (node,) = parse_nodes(["w1", "-A", "proj:app"], cwd=tmp_path, host="h")
    assert node.pidfile == tmp_path / "w1.pid"
    assert node.logfile == tmp_path / "w1.log"
    assert node.options == ("-A", "proj:app")


def test_placeholders_in_paths(tmp_path: Path) -> None:
    nodes = parse_nodes(
        ["a", "b", "--pidfile", "/run/x/%n.pid", "--logfile=/var/log/x/%i-%h-%d%I.log"],
        cwd=tmp_path,
        host="h",
    )
    assert [str(n.pidfile) for n in nodes] == ["/run/x/a.pid", "/run/x/b.pid"]
    assert [str(n.logfile) for n in nodes] == ["/var/log/x/1-a@h-h.log", "/var/log/x/2-b@h-h.log"]
    assert expand("100%% %n %q", "w1@h", 1) == "100% w1 %q"


def test_per_node_options_by_name_position_and_list(tmp_path: Path) -> None:
    nodes = parse_nodes(
        [
            "w1",
            "w2",
            "w3",
            "-A",
            "p:app",
            "-c:w1",
            "8",
            "--queues:2=images",
            "-E:1,3",
            "-l",
            "info",
        ],
        cwd=tmp_path,
        host="h",
    )
    options = {n.short: n.options for n in nodes}
    assert options["w1"] == ("-A", "p:app", "-l", "info", "-c", "8", "-E")
    assert options["w2"] == ("-A", "p:app", "-l", "info", "--queues", "images")
    assert options["w3"] == ("-A", "p:app", "-l", "info", "-E")
    assert nodes[0].command()[-9:-7] == ["--logfile", str(tmp_path / "w1.log")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "name at least one node"),
        (["-A", "p:app", "w1"], "name at least one node"),
        (["w1", "w1"], "named twice"),
        (["w1", "-c:w9", "2"], "-c:w9 names no node"),
        (["w1", "-n", "x@h"], "not with -n"),
        (["w1", "--pidfile"], "--pidfile needs a value"),
        (["0"], "at least 1"),
    ],
)
def test_bad_command_lines(args: list[str], message: str) -> None:
    with pytest.raises(MultiUsageError, match=message):
        parse_nodes(args, host="h")


def test_show_prints_worker_commands_without_the_broker_password(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["-A", "proj:app", "multi", "show", "w1", "w2", "-b", "amqp://u:s3cret@h/", "-c:w2", "2"],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert "worker --hostname w1@" in lines[0] and "-A proj:app" in lines[0]
    assert lines[1].endswith("-c 2")
    assert "s3cret" not in result.output


def test_stop_says_when_a_node_is_not_running(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["multi", "stop", "w1", "--pidfile", f"{tmp_path}/%n.pid"])
    assert result.exit_code == 0
    assert result.output.strip() == (
        f"> w1@{os.uname().nodename}: DOWN (not running: no pid file at {tmp_path}/w1.pid)"
    )


def test_stale_pid_file_is_removed(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    pidfile = tmp_path / "w1.pid"
    pidfile.write_text(f"{proc.pid}\n")
    assert read_pid(pidfile) == proc.pid and not alive(proc.pid)
    result = CliRunner().invoke(cli, ["multi", "stopwait", "w1", "--pidfile", f"{tmp_path}/%n.pid"])
    assert result.exit_code == 0
    assert f"DOWN (stale pid file removed: pid {proc.pid} is not running)" in result.output
    assert not pidfile.exists()


def test_a_pid_reused_by_another_program_is_not_a_worker(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert not alive(sleeper.pid)  # running, but not amqptasks: a stale pid file
    finally:
        sleeper.kill()
        sleeper.wait()


def test_start_reports_a_worker_that_fails_with_its_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "multi",
            "start",
            "w1",
            "-A",
            "no_such_module:app",
            "--pidfile",
            f"{tmp_path}/%n.pid",
            "--logfile",
            f"{tmp_path}/%n.log",
        ],
    )
    assert result.exit_code == 1
    line = result.output.splitlines()[-1]
    assert "w1@" in line and "FAILED (exit 2)" in line and "no_such_module" in line
    assert f"[log: {tmp_path}/w1.log]" in line
    assert not (tmp_path / "w1.pid").exists()


def test_start_without_an_app_says_how_to_name_it(tmp_path: Path) -> None:
    runner = CliRunner(env={"AMQPTASKS_APP": None})
    result = runner.invoke(cli, ["multi", "start", "w1", "--pidfile", f"{tmp_path}/%n.pid"])
    assert result.exit_code == 2
    assert "multi start needs the app: amqptasks multi start w1 w2 -A proj:app" in result.output
    assert not list(tmp_path.iterdir())  # nothing started, no file written
