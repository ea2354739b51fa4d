"""Find an App by import path (``module:attribute``), and the path of an App.

The CLI loads the app named by ``-A`` this way, and so does each child of the
``processes`` pool, which imports the app afresh.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from amqptasks.exceptions import ConfigError

if TYPE_CHECKING:
    from amqptasks.app import App


class AppImportError(ConfigError):
    """``-A module:attribute`` names no importable App (a usage error, not a setting)."""


def import_app(path: str) -> App:
    """Import ``module:attribute`` (or ``module``, if it holds exactly one App).

    The current directory is put on ``sys.path`` first, as ``python -m`` does.

    Raises:
        AppImportError: the module cannot be imported, or holds no (or several) App.
        ConfigError: the App the module builds has a bad setting.
    """
    from amqptasks.app import App

    module_name, _, attribute = path.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppImportError(f"cannot import {module_name!r} (from -A {path}): {exc}") from exc
    if attribute:
        obj: Any = module
        for part in attribute.split("."):
            obj = getattr(obj, part, None)
        if not isinstance(obj, App):
            raise AppImportError(f"{path} is not an amqptasks App (got {type(obj).__name__})")
        return obj
    apps = [value for value in vars(module).values() if isinstance(value, App)]
    if len(apps) != 1:
        raise AppImportError(
            f"module {module_name!r} has {len(apps)} App objects; name one as {module_name}:NAME"
        )
    return apps[0]


def find_app_path(app: App) -> str | None:
    """``module:attribute`` of a module-level name bound to ``app``, if there is one.

    Modules run as scripts (``__main__``) are skipped: another process cannot
    import them under that name.
    """
    for name, module in list(sys.modules.items()):
        if module is None or name in ("__main__", "__mp_main__"):
            continue
        try:
            items = list(vars(module).items())
        except TypeError:
            continue
        for attribute, value in items:
            if value is app and not attribute.startswith("__"):
                return f"{name}:{attribute}"
    return None
