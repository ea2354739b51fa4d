"""The packaged copies of rabbitmq-node and rabbitmq-cluster must equal deploy/local's."""

from __future__ import annotations

import os
import subprocess

import pytest

from amqptasks.testing.node import packaged_script_path, repo_script_path

SCRIPTS = ["rabbitmq-node", "rabbitmq-cluster"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_packaged_script_is_identical_to_deploy_script(name: str) -> None:
    source = repo_script_path(name)
    copy = packaged_script_path(name)
    assert source.is_file(), f"missing {source}"
    assert copy.is_file(), f"missing {copy}"
    assert source.read_bytes() == copy.read_bytes(), (
        f"{copy} is out of date; run: cp {source} {copy}"
    )


@pytest.mark.parametrize("name", SCRIPTS)
def test_deploy_script_is_executable_and_parses(name: str) -> None:
    source = repo_script_path(name)
    assert os.access(source, os.X_OK), f"{source} is not executable"
    subprocess.run(["bash", "-n", str(source)], check=True)
