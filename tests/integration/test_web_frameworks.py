"""Flask (app factory, app context in tasks) and FastAPI (lifespan, adelay, results) for real."""

from __future__ import annotations

import asyncio
import importlib
import os
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from amqptasks import App, AsyncResult
from amqptasks.contrib.fastapi import TaskResult  # noqa: TC001 - FastAPI reads it at runtime

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from amqptasks.testing.proxy import FaultProxy
    from tests.integration.conftest import WorkerProcess

pytestmark = pytest.mark.integration

FLASK_APP = "tests.integration.webapps.flask_app:app"


@pytest.fixture(scope="module")
def flask_module(broker_env: str) -> Iterator[Any]:
    os.environ["AMQPTASKS_TEST_FLASK_QUEUE"] = f"flaskproj-{uuid.uuid4().hex[:8]}"
    module = importlib.import_module("tests.integration.webapps.flask_app")
    yield module
    module.app.close()


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_a_flask_task_runs_in_the_flask_app_context(
    flask_module: Any, start_worker: Callable[..., WorkerProcess], pool: str
) -> None:
    start_worker("--pool", pool, "-c", "1", app=FLASK_APP)
    client = flask_module.flask_app.test_client()
    task_id = client.post("/greet").get_json()["id"]
    assert client.get(f"/result/{task_id}").get_json() == {"value": "hello from flask"}
    assert flask_module.flask_app.extensions["amqptasks"].app is flask_module.app


def test_init_app_reads_the_flask_config(broker_env: str) -> None:
    from flask import Flask

    from amqptasks.contrib.flask import Amqptasks

    flask_app = Flask("configured")
    flask_app.config.update(AMQPTASKS_TASK_MAX_RETRIES=9, SECRET_KEY="not read")
    extension = Amqptasks("configured")
    extension.init_app(flask_app)
    assert extension.app.settings.task_max_retries == 9


async def test_fastapi_enqueues_without_blocking_the_event_loop(
    core: Any,
    start_worker: Callable[..., WorkerProcess],
    fault_proxy: FaultProxy,
    broker_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx
    from fastapi import FastAPI

    from amqptasks.contrib.fastapi import lifespan, result_body

    start_worker()
    monkeypatch.setenv("AMQPTASKS_BROKER_URL", fault_proxy.url(broker_url))
    app = App("fastapi-test", default_queue=core.app.settings.default_queue)

    @app.task(name=core.add.name)
    def add(x: int, y: int) -> int:
        return x + y

    api = FastAPI(lifespan=lifespan(app))

    @api.post("/add")
    async def start(x: int, y: int) -> dict[str, str]:
        return {"id": (await add.adelay(x, y)).id}

    @api.get("/ping")
    async def ping() -> str:
        return "pong"

    @api.get("/result/{task_id}")
    async def result(result: TaskResult) -> dict[str, Any]:
        return await result_body(result, wait=20)

    transport = httpx.ASGITransport(app=api)
    async with (
        api.router.lifespan_context(api),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        task_id = (await client.post("/add", params={"x": 2, "y": 3})).json()["id"]
        body = (await client.get(f"/result/{task_id}")).json()
        assert body == {"id": task_id, "state": "SUCCESS", "value": 5}

        # The broker stops answering: a send waits for its confirm, on the loop...
        fault_proxy.blackhole()
        pending = asyncio.create_task(client.post("/add", params={"x": 20, "y": 22}))
        for _ in range(20):
            await asyncio.sleep(0)
        # ...while the same loop goes on serving other requests.
        assert (await client.get("/ping")).json() == "pong"
        assert not pending.done()
        fault_proxy.restore()
        sent = (await asyncio.wait_for(pending, 30)).json()["id"]
        assert await AsyncResult(sent, store=app.results).aget(timeout=20) == 42
    assert app._aio_clients.get(asyncio.get_running_loop()) is None  # closed by the lifespan
