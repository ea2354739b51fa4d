"""``python -m amqptasks`` runs the CLI."""

from __future__ import annotations

from amqptasks.cli import main

main()
