"""Load worker extensions given as objects, classes or ``module:attribute`` paths."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import ConfigError
from amqptasks.worker.extension import Extension

if TYPE_CHECKING:
    from collections.abc import Iterable


def load_extension(item: Any) -> Extension:
    """One extension: an :class:`Extension`, a subclass (made with no arguments), or the
    ``module:attribute`` import path of either.

    Raises:
        ConfigError: the path cannot be imported, or it is not an extension.
    """
    found = item
    if isinstance(item, str):
        module_name, _, attribute = item.partition(":")
        if not module_name or not attribute:
            raise ConfigError(f"worker extension {item!r}: expected 'module:attribute'")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"worker extension {item!r}: cannot import {module_name}: {exc}"
            ) from None
        try:
            found = getattr(module, attribute)
        except AttributeError:
            raise ConfigError(
                f"worker extension {item!r}: {module_name} has no {attribute!r}"
            ) from None
    if isinstance(found, type) and issubclass(found, Extension):
        return found()
    if isinstance(found, Extension):
        return found
    raise ConfigError(
        f"worker extension {item!r} is a {type(found).__name__}, not an "
        f"amqptasks.worker.Extension (or a subclass of it)"
    )


def load_extensions(items: Iterable[Any]) -> list[Extension]:
    """:func:`load_extension` for each item, in order."""
    return [load_extension(item) for item in items]
