"""Unit-test fixtures: no broker, no influence from the caller's environment."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_amqptasks_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide ``AMQPTASKS_*`` variables so that ``App(...)`` only sees what a test gives it."""
    for name in list(os.environ):
        if name.startswith("AMQPTASKS_"):
            monkeypatch.delenv(name)
