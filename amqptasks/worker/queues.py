"""Which queues a worker consumes: ``-Q`` and ``-X`` (pure)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amqptasks.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from amqptasks.app import App


def known_queues(app: App) -> list[str]:
    """The app's default queue, then the queues it defines, without duplicates."""
    return list(dict.fromkeys([app.settings.default_queue, *app.router.queues]))


def split_names(text: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def select_queues(
    app: App, queues: Sequence[str] | None, exclude: Sequence[str] | None = None
) -> list[str] | None:
    """The queues to consume: ``queues`` (or the app's known ones) minus ``exclude``.

    Returns ``None`` (the worker's default: the app's default queue) when neither
    is given.

    Raises:
        ConfigError: nothing is left once ``exclude`` is taken away.
    """
    if not exclude:
        return list(queues) if queues else None
    base = list(queues) if queues else known_queues(app)
    left = [name for name in base if name not in set(exclude)]
    if not left:
        raise ConfigError(
            f"no queue left to consume: {', '.join(base)} minus excluded {', '.join(exclude)}"
        )
    return left
