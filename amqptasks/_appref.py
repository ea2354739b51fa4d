"""Find an App by import path (``module:attribute`` or ``module``), and the path of an App.

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
    from types import ModuleType

    from amqptasks.app import App


class AppImportError(ConfigError):
    """``-A module:attribute`` names no importable App (a usage error, not a setting)."""


#: Where ``-A proj`` looks for the app, as Celery does: these attributes of ``proj``,
#: then these submodules of a package ``proj`` (``proj/app.py``, ``proj/celery.py``, ...).
CONVENTIONAL_NAMES = ("app", "amqptasks", "celery")


def import_app(path: str) -> App:
    """Import ``module:attribute``, or find the App in ``module``.

    ``-A proj`` takes the only App in ``proj``, else ``proj.app`` (or
    ``proj.amqptasks``, ``proj.celery``), as an attribute or as a submodule of
    a package, as Celery's ``-A`` does. The current directory is put on
    ``sys.path`` first, as ``python -m`` does.

    Raises:
        AppImportError: in one line, what is wrong with ``path`` and what to do.
        ConfigError: the App the module builds has a bad setting.
    """
    module_name, _, attribute = path.strip().partition(":")
    if not module_name:
        raise AppImportError(
            f"-A {path!r} names no module: write -A MODULE:ATTRIBUTE, e.g. -A proj:app"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = _import(module_name, path)
    if attribute:
        return _attribute(module, module_name, attribute, path)
    found = _find_in(module)
    if found is not None:
        return found
    if hasattr(module, "__path__"):  # a package: look in its conventional submodules
        for name in CONVENTIONAL_NAMES:
            try:
                submodule = importlib.import_module(f"{module_name}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{module_name}.{name}":
                    raise AppImportError(_import_error(f"{module_name}.{name}", path, exc)) from exc
                continue
            except ImportError as exc:
                raise AppImportError(_import_error(f"{module_name}.{name}", path, exc)) from exc
            found = _find_in(submodule)
            if found is not None:
                return found
    where = ", ".join(CONVENTIONAL_NAMES)
    raise AppImportError(
        f"no amqptasks App found in module {module_name!r} (-A {path}): it has "
        f"{_count_apps(module)} App objects and none named {where}; "
        f"name one as -A {module_name}:NAME"
    )


def _import(module_name: str, path: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise AppImportError(_import_error(module_name, path, exc)) from exc


def _import_error(module_name: str, path: str, exc: ImportError) -> str:
    missing = getattr(exc, "name", None)
    top = module_name.partition(".")[0]
    if isinstance(exc, ModuleNotFoundError) and missing in (module_name, top):
        return (
            f"cannot import {module_name!r} (from -A {path}): no module {missing!r} in the "
            f"current directory ({os.getcwd()}) or on PYTHONPATH; run the command from the "
            f"directory that holds it, or add that directory to PYTHONPATH"
        )
    # The module was found but failed while importing (a missing dependency, a typo).
    return f"cannot import {module_name!r} (from -A {path}): {type(exc).__name__}: {exc}"


def _attribute(module: ModuleType, module_name: str, attribute: str, path: str) -> App:
    from amqptasks.app import App

    obj: Any = module
    for part in attribute.split("."):
        if not part or not hasattr(obj, part):
            apps = _app_names(module)
            hint = f"; its App objects: {', '.join(apps)}" if apps else "; it defines no App"
            raise AppImportError(
                f"module {module_name!r} has no attribute {attribute!r} (-A {path}){hint}"
            )
        obj = getattr(obj, part)
    if not isinstance(obj, App):
        raise AppImportError(
            f"-A {path} is a {type(obj).__name__}, not an amqptasks App "
            f"(made with App(...)); name the App object after the colon"
        )
    return obj


def _app_names(module: ModuleType) -> list[str]:
    from amqptasks.app import App

    return [name for name, value in vars(module).items() if isinstance(value, App)]


def _count_apps(module: ModuleType) -> int:
    return len(_app_names(module))


def _find_in(module: ModuleType) -> App | None:
    """The only App of ``module``, else one under a conventional name, else None."""
    from amqptasks.app import App

    apps = list({id(v): v for v in vars(module).values() if isinstance(v, App)}.values())
    if len(apps) == 1:
        return apps[0]
    for name in CONVENTIONAL_NAMES:
        value = getattr(module, name, None)
        if isinstance(value, App):
            return value
    return None


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
