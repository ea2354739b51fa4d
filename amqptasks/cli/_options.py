"""Options shared by every command, declared once."""

from __future__ import annotations

import functools
import logging
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


#: Libraries whose connection-error logs repeat what amqptasks says in one line.
_CHATTY_LIBRARIES = ("pika", "aiormq", "aio_pika")

#: -A/--app and -b/--broker-url may come before the command too, as Celery spells it:
#: ``amqptasks -A proj:app worker``.
app_option = click.option(
    "-A",
    "--app",
    "app_path",
    envvar="AMQPTASKS_APP",
    default=None,
    help="The app, as module:attribute or module (env AMQPTASKS_APP).",
)
broker_option = click.option(
    "-b",
    "--broker-url",
    envvar="AMQPTASKS_BROKER_URL",
    default=None,
    help="Override the broker URL (env AMQPTASKS_BROKER_URL).",
)

#: TLS to the broker (docs/tls.md): option name -> (setting, help). Each sets its
#: ``AMQPTASKS_<SETTING>`` variable, as -b does, so supervised worker processes get it
#: too. The key password has no option (it would show in ``ps``): set
#: AMQPTASKS_BROKER_TLS_KEY_PASSWORD.
_TLS_OPTIONS = {
    "--broker-tls-ca-file": (
        "broker_tls_ca_file",
        "PEM file of the CA that signed the broker's certificate",
    ),
    "--broker-tls-cert-file": ("broker_tls_cert_file", "PEM file of the client certificate"),
    "--broker-tls-key-file": ("broker_tls_key_file", "PEM file of the client certificate's key"),
    "--broker-tls-server-hostname": (
        "broker_tls_server_hostname",
        "The name the broker's certificate must carry, if not the URL's host",
    ),
    "--broker-login-method": (
        "broker_login_method",
        "PLAIN (the URL's user and password) or EXTERNAL (the client certificate)",
    ),
}


def tls_options(func: F) -> F:
    """Add the ``--broker-tls-*`` and ``--broker-login-method`` options to a command."""
    for flag, (name, text) in reversed(_TLS_OPTIONS.items()):
        func = click.option(
            flag, name, envvar=env_name(name), default=None, help=setting_help(text, name)
        )(func)
    return func


def _export_tls_options(kwargs: dict[str, Any]) -> None:
    """Move the TLS options out of ``kwargs`` into the environment the settings read."""
    for name, _text in _TLS_OPTIONS.values():
        value = kwargs.pop(name, None)
        if value:
            os.environ[env_name(name)] = value


_MISSING_APP = (
    "Missing option '-A' / '--app': name the app as -A MODULE:ATTRIBUTE (e.g. -A proj:app), "
    "before or after the command, or set AMQPTASKS_APP"
)


def _from_root(ctx: click.Context, name: str) -> Any:
    """``name`` as given to this command, else as given before it (``amqptasks -A x cmd``)."""
    source = ctx.get_parameter_source(name)
    given = ctx.params.get(name)
    if given is not None and source is click.core.ParameterSource.COMMANDLINE:
        return given
    root = ctx.find_root()
    if root is not ctx and root.params.get(name) is not None:
        return root.params[name]
    return given


def quiet_libraries(loglevel: str) -> None:
    """Below debug, hide pika's and aiormq's own connection-error logs.

    They log each failed step of a connection attempt (about 28 lines when no
    broker listens); amqptasks turns the failure into one line saying what to do.
    """
    if loglevel.lower() != "debug":
        for name in _CHATTY_LIBRARIES:
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def shared_options(func: F, *, app_required: bool = True) -> F:
    """Add -A/--app, -b/--broker-url, -l/--loglevel and --log-format to a command.

    -A and -b may also be given before the command (``amqptasks -A proj:app worker``);
    given after it, they win. Without ``app_required`` (a group whose subcommands
    print their own ``--help``), a missing -A passes ``app=None``.
    """

    @app_option
    @broker_option
    @tls_options
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
        app_path: str | None,
        broker_url: str | None,
        loglevel: str,
        log_format: str,
        **kwargs: Any,
    ) -> Any:
        _export_tls_options(kwargs)
        configure_logging(loglevel, "json" if log_format == "json" else "console")
        quiet_libraries(loglevel)
        ctx = click.get_current_context()
        app_path = _from_root(ctx, "app_path")
        broker_url = _from_root(ctx, "broker_url")
        if not app_path:
            if app_required:
                raise click.UsageError(_MISSING_APP)
            return func(*args, app=None, **kwargs)
        # Worker processes of a supervisor get these as parsed here.
        ctx.params.update(app_path=app_path, broker_url=broker_url)
        if broker_url:
            os.environ["AMQPTASKS_BROKER_URL"] = broker_url
        try:
            app = load_app(app_path)
            return func(*args, app=app, **kwargs)
        except AmqptasksError as exc:
            raise click.ClickException(redact(f"{type(exc).__name__}: {exc}")) from exc

    return wrapper  # type: ignore[return-value]


def group_options(func: F) -> F:
    """:func:`shared_options` for a group: -A may be left out until it is needed."""
    return shared_options(func, app_required=False)


def need_app(app: App | None) -> App:
    """The app a subcommand needs, or the usage error that says how to name it."""
    if app is None:
        raise click.UsageError(_MISSING_APP)
    return app
