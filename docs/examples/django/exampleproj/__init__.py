"""The example project; its amqptasks app exists whenever Django runs."""

from __future__ import annotations

from exampleproj.amqptasks import app

__all__ = ["app"]
