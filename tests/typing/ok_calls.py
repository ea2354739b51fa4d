"""Type-correct uses of the public API: ``mypy`` (strict) must accept this file.

Only type-checked, never run (it would need a broker).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from typing_extensions import assert_type

from amqptasks import App, AsyncResult, Task

app = App("typing", broker_url="amqp://guest:guest@127.0.0.1:1//")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="typing.greet", queue="greetings")
def greet(name: str, *, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


assert_type(add(1, 2), int)
assert_type(add.delay(1, 2), AsyncResult)
assert_type(add.apply_async((1, 2), queue="q", priority=3), AsyncResult)
add.apply_async(
    (1, 2),
    task_id="an-id",
    exchange="tasks",
    routing_key="math.add",
    expires=dt.datetime.now(dt.timezone.utc),
    headers={"x-trace": "1"},
    serializer="msgpack",
    compression="zlib",
    ignore_result=True,
)
add.apply_async(kwargs={"x": 1, "y": 2}, expires=30.0)
add.apply_async((1, 2), time_limit=30, soft_time_limit=25.5)


@app.task(time_limit=60, soft_time_limit=50, rate_limit="10/s")
def limited(x: int) -> int:
    return x


assert_type(greet("bob", punctuation="?"), str)
greet.delay("bob", punctuation="?")


async def use_async() -> int:
    result = await add.adelay(1, 2)
    value: int = await result.aget(timeout=5)
    await add.aapply_async((1, 2), priority=1)
    return value


class Tracked(Task[Any, Any]):
    """A base class for several tasks (``base=``, as Celery's)."""


@app.task(base=Tracked, queue="q")
def tracked(x: int) -> int:
    return x


assert_type(tracked(1), int)
assert_type(tracked.delay(1), AsyncResult)
