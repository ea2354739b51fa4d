"""The app the core benchmark's worker runs (broker URL from AMQPTASKS_BROKER_URL)."""

from __future__ import annotations

from amqptasks import App

app = App("bench")


@app.task(ignore_result=True)
def noop() -> None:
    return None


@app.task
def echo(value: int) -> int:
    return value
