"""Options shared by every command, declared once."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from amqptasks._appref import AppImportError, import_app
from amqptasks.config import env_name, setting_default
from amqptasks.exceptions import AmqptasksError
from amqptasks.logging import configure_logging, redact

if TYPE_CHECKING:
    from amqptasks.app import App

F = TypeVar("F", bound=Callable[..., Any])


def setting_help(text: str, name: str) -> str:
    """``text`` followed by setting ``name``'s environment variable and default.

    The default is read from :class:`~amqptasks.config.Settings`, so help never
    shows another value than the one a worker uses.
    """
    default = setting_default(name)
    if default is None:
        return f"{text} (env {env_name(name)})."
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    return f"{text} (env {env_name(name)}, default {shown})."


def load_app(path: str) -> App:
    """Import ``module:attribute`` (or ``module``, finding its App) and return the App."""
    try:
        return import_app(path)
    except AppImportError as exc:
        # A bad setting of the App (its broker URL, say) is not a usage error: it
        # goes on to the ClickException below and exits 1, as docs/errors.md says.
        raise click.UsageError(redact(str(exc))) from exc


def shared_options(func: F) -> F:
    """Add -A/--app, --broker-url, -l/--loglevel and --log-format to a command."""

    @click.option(
        "-A",
        "--app",
        "app_path",
        envvar="AMQPTASKS_APP",
        required=True,
        help="The app, as module:attribute (env AMQPTASKS_APP).",
    )
    @click.option(
        "--broker-url",
        envvar="AMQPTASKS_BROKER_URL",
        default=None,
        help="Override the broker URL (env AMQPTASKS_BROKER_URL).",
    )
    @click.option(
        "-l",
        "--loglevel",
        envvar="AMQPTASKS_LOGLEVEL",
        default="warning",
        show_default=True,
        type=click.Choice(["debug", "info", "warning", "error", "critical"], case_sensitive=False),
    )
    @click.option(
        "--log-format",
        envvar="AMQPTASKS_LOG_FORMAT",
        default="console",
        show_default=True,
        type=click.Choice(["console", "json"]),
    )
    @functools.wraps(func)
    def wrapper(
        *args: Any,
        app_path: str,
        broker_url: str | None,
        loglevel: str,
        log_format: str,
        **kwargs: Any,
    ) -> Any:
        configure_logging(loglevel, "json" if log_format == "json" else "console")
        if broker_url:
            os.environ["AMQPTASKS_BROKER_URL"] = broker_url
        try:
            app = load_app(app_path)
            return func(*args, app=app, **kwargs)
        except AmqptasksError as exc:
            raise click.ClickException(redact(f"{type(exc).__name__}: {exc}")) from exc

    return wrapper  # type: ignore[return-value]
