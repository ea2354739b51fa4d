"""mypy accepts correct calls of typed tasks and rejects wrong ones.

``tests/typing/ok_calls.py`` must type-check cleanly under the project's strict
settings; every line of ``tests/typing/should_fail/bad_calls.py`` marked
``# E: <code>`` must be reported with that error code, and no other line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api as mypy_api

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "pyproject.toml"
OK_FILE = ROOT / "tests" / "typing" / "ok_calls.py"
BAD_FILE = ROOT / "tests" / "typing" / "should_fail" / "bad_calls.py"
MARK = re.compile(r"#\s*E:\s*(?P<code>[a-z-]+)\s*$")
ERROR = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private mypy cache, shared by the two runs (the second reuses the first's work)."""
    return tmp_path_factory.mktemp("mypy-cache")


def _mypy(path: Path, cache_dir: Path) -> tuple[str, int]:
    stdout, stderr, status = mypy_api.run(
        [
            "--config-file",
            str(CONFIG),
            "--cache-dir",
            str(cache_dir),
            "--no-error-summary",
            "--show-error-codes",
            "--no-color-output",
            str(path),
        ]
    )
    assert "error: " not in stderr, stderr
    return stdout, status


def _expected_errors() -> dict[int, str]:
    expected: dict[int, str] = {}
    for number, line in enumerate(BAD_FILE.read_text().splitlines(), start=1):
        match = MARK.search(line)
        if match:
            expected[number] = match["code"]
    return expected


def test_correct_calls_type_check(cache_dir: Path) -> None:
    stdout, status = _mypy(OK_FILE, cache_dir)
    assert status == 0, stdout
    assert stdout == "", stdout


def test_wrong_calls_are_reported(cache_dir: Path) -> None:
    expected = _expected_errors()
    assert len(expected) >= 3  # the markers were found

    stdout, status = _mypy(BAD_FILE, cache_dir)
    assert status == 1, stdout
    reported: dict[int, set[str]] = {}
    for line in stdout.splitlines():
        match = ERROR.match(line)
        if match:
            assert Path(match["path"]).name == BAD_FILE.name, line
            reported.setdefault(int(match["line"]), set()).add(match["code"])

    for number, code in expected.items():
        assert number in reported, f"bad_calls.py:{number} not reported:\n{stdout}"
        assert code in reported[number], f"bad_calls.py:{number}: no [{code}]:\n{stdout}"
    unexpected = sorted(set(reported) - set(expected))
    assert unexpected == [], f"errors on unmarked lines {unexpected}:\n{stdout}"


def test_specific_messages_for_the_wrong_calls(cache_dir: Path) -> None:
    stdout, _status = _mypy(BAD_FILE, cache_dir)
    assert 'Argument 1 to "delay" of "Task" has incompatible type "str"; expected "int"' in stdout
    assert 'Missing positional argument "y" in call to "delay" of "Task"' in stdout
    assert 'Unexpected keyword argument "prioritee" for "apply_async" of "Task"' in stdout
