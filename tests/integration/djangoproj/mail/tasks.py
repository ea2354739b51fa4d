"""Tasks of a reusable app: it never imports the project's app."""

from __future__ import annotations

from amqptasks.contrib.django import shared_task


@shared_task
def greeting(name: str) -> str:
    """A shared task: the worker knows it through autodiscovery."""
    return f"hello {name}"
