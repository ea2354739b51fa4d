"""Flask integration: ``init_app`` for the app-factory pattern, the app context around tasks.

::

    # proj/extensions.py
    from amqptasks.contrib.flask import Amqptasks

    amqptasks = Amqptasks("proj")           # the amqptasks App: amqptasks.app

    @amqptasks.app.task
    def send_mail(user_id: int) -> None:
        user = db.session.get(User, user_id)  # current_app, extensions: all there

    # proj/__init__.py
    def create_app() -> Flask:
        flask_app = Flask(__name__)
        flask_app.config.from_prefixed_env()   # AMQPTASKS_BROKER_URL, ...
        amqptasks.init_app(flask_app)
        return flask_app

    # proj/worker.py (amqptasks worker -A proj.worker:app)
    from proj import create_app
    from proj.extensions import amqptasks

    flask_app = create_app()
    app = amqptasks.app

Settings come from the Flask config's ``AMQPTASKS_*`` keys. In a worker, each
plain-function task runs inside ``flask_app.app_context()``, pushed in the
thread or child process that runs it (``async def`` tasks run on the worker's
event loop, without it).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from amqptasks.app import App
from amqptasks.request import call_wrappers

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from flask import Flask

    from amqptasks.request import Request

__all__ = ["Amqptasks"]


class Amqptasks:
    """The Flask extension: owns an amqptasks :class:`~amqptasks.App`.

    Args:
        main: The amqptasks app's name.
        flask_app: A Flask app to set up now (else call :meth:`init_app` later).
        app: An existing amqptasks App to use instead of making one.
        namespace: The prefix of the Flask config keys read as settings.
    """

    def __init__(
        self,
        main: str = "flask",
        flask_app: Flask | None = None,
        *,
        app: App | None = None,
        namespace: str = "AMQPTASKS",
    ) -> None:
        self.app = app or App(main)
        self.namespace = namespace
        self.flask_app: Flask | None = None
        if flask_app is not None:
            self.init_app(flask_app)

    def init_app(self, flask_app: Flask) -> None:
        """Read the ``AMQPTASKS_*`` config, register as ``flask_app.extensions["amqptasks"]``,
        and have tasks run in ``flask_app``'s app context.

        Raises:
            ConfigError: an unknown or bad ``AMQPTASKS_*`` value.
        """
        prefix = f"{self.namespace}_"
        given = {key: value for key, value in flask_app.config.items() if key.startswith(prefix)}
        if given:
            self.app.config_from_object(SimpleNamespace(**given), namespace=self.namespace)
        flask_app.extensions["amqptasks"] = self
        self.flask_app = flask_app
        if self._in_app_context not in call_wrappers:
            call_wrappers.append(self._in_app_context)

    def _in_app_context(self, request: Request) -> AbstractContextManager[Any]:
        import contextlib

        if self.flask_app is None:
            return contextlib.nullcontext()
        return self.flask_app.app_context()
