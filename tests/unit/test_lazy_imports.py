"""A process that signs and encrypts nothing never loads the cryptography library."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
from amqptasks import App
from amqptasks.cli import cli
from amqptasks.security.extension import security_rules
from amqptasks.security.wanted import sealer_for, verifier_for
from amqptasks.worker.rules import standard_rules

app = App("probe", broker_url="amqp://guest:guest@127.0.0.1:1//")
standard_rules()
assert sealer_for(app.settings) is None and verifier_for(app.settings) is None
assert security_rules(app.settings) == []
print(sorted(name for name in sys.modules if name.split(".")[0] == "cryptography"))
"""


def test_the_cli_a_producer_and_a_worker_without_keys_do_not_import_cryptography() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_key_helpers_still_load_on_first_use() -> None:
    from amqptasks import security

    private, public = security.generate_ed25519()
    assert b"PRIVATE KEY" in private and b"PUBLIC KEY" in public
