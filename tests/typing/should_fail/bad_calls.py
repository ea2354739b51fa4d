"""Wrong uses of the public API: ``mypy`` must report an error on each marked line.

tests/unit/test_typing.py checks that every line marked ``# E:`` is reported
(and no other line). Excluded from the normal ``mypy`` run.
"""

from __future__ import annotations

from amqptasks import App

app = App("typing", broker_url="amqp://guest:guest@127.0.0.1:1//")


@app.task
def add(x: int, y: int) -> int:
    return x + y


add.delay("a", 2)  # E: arg-type
add.delay(1)  # E: call-arg
add.apply_async((1, 2), prioritee=1)  # E: call-arg
add.apply_async((1, 2), priority="high")  # E: arg-type
wrong: str = add(1, 2)  # E: assignment


@app.task(base=int)  # E: arg-type
def based(x: int) -> int:
    return x
