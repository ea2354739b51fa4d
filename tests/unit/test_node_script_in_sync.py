"""The packaged copy of rabbitmq-node must equal deploy/local/rabbitmq-node."""

from __future__ import annotations

import os
import subprocess

from amqptasks.testing.node import packaged_script_path, repo_script_path


def test_packaged_script_is_identical_to_deploy_script() -> None:
    source = repo_script_path()
    copy = packaged_script_path()
    assert source.is_file(), f"missing {source}"
    assert copy.is_file(), f"missing {copy}"
    assert source.read_bytes() == copy.read_bytes(), (
        f"{copy} is out of date; run: cp {source} {copy}"
    )


def test_deploy_script_is_executable_and_parses() -> None:
    source = repo_script_path()
    assert os.access(source, os.X_OK), f"{source} is not executable"
    subprocess.run(["bash", "-n", str(source)], check=True)
