"""A Flask project in the app-factory pattern: ``-A tests.integration.webapps.flask_app:app``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from flask import Flask, current_app, jsonify

from amqptasks import AsyncResult
from amqptasks.contrib.flask import Amqptasks

if TYPE_CHECKING:
    from flask.typing import ResponseReturnValue

amqptasks = Amqptasks("flaskproj")


@amqptasks.app.task
def config_value(key: str) -> str:
    """A value of the Flask config: only there inside the Flask app context."""
    return str(current_app.config[key])


def create_app() -> Flask:
    """The factory: the extension is bound here, not at import."""
    flask_app = Flask(__name__)
    flask_app.config.update(
        GREETING="hello from flask",
        AMQPTASKS_DEFAULT_QUEUE=os.environ.get("AMQPTASKS_TEST_FLASK_QUEUE", "flaskproj"),
    )
    amqptasks.init_app(flask_app)

    @flask_app.post("/greet")
    def greet() -> ResponseReturnValue:
        return jsonify(id=config_value.delay("GREETING").id)

    @flask_app.get("/result/<task_id>")
    def result(task_id: str) -> ResponseReturnValue:
        found = AsyncResult(task_id, store=amqptasks.app.results)
        return jsonify(value=found.get(timeout=20))

    return flask_app


flask_app = create_app()
app = amqptasks.app
