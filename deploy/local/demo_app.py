"""The demo app run by ``deploy/local/demo``.

Imported by the worker (``amqptasks worker -A demo_app:app``) for its tasks, and run
as a script (``python deploy/local/demo_app.py``) as the producer that sends them.
Both need ``AMQPTASKS_BROKER_URL`` pointing at a broker; ``deploy/local/demo`` starts
a private one and sets it.

Tasks are named ``demo_app.<function>`` in both roles: the app is called
``demo_app``, which is the prefix used for tasks defined in ``__main__``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from amqptasks import App

app = App("demo_app")


@app.task
def add(x: int, y: int) -> int:
    """Runs from the app's default queue (``default``)."""
    return x + y


@app.task(queue="mail")
def send_welcome_mail(address: str) -> str:
    """Routed to the ``mail`` queue; pretends to send a mail."""
    request = send_welcome_mail.request  # the call being run: id, queue, retries, ...
    return f"welcome mail sent to {address} (queue {request.queue!r}, task {request.id})"


@app.task(queue="reports")
def build_report(name: str, figures: list[float]) -> dict[str, Any]:
    """Routed to the ``reports`` queue; returns a JSON-friendly dict."""
    return {
        "report": name,
        "count": len(figures),
        "total": sum(figures),
        "mean": sum(figures) / len(figures) if figures else None,
    }


@app.task
def divide(x: float, y: float) -> float:
    """Fails with ZeroDivisionError when ``y == 0``; ``.get()`` re-raises it."""
    return x / y


@app.task
async def slow_square(x: int) -> int:
    """An ``async def`` task: it runs on the worker's event loop."""
    await asyncio.sleep(0.1)
    return x * x


# -- the producer side: `python demo_app.py` -----------------------------------------------

TIMEOUT = 30.0


class Demo:
    """Runs the steps, prints each result, counts what went wrong."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, what: str, got: Any, want: Any) -> None:
        ok = got == want
        print(
            f"  {'ok  ' if ok else 'FAIL'} {what} -> {got!r}" + ("" if ok else f" (want {want!r})")
        )
        if not ok:
            self.failures.append(what)

    def step(self, title: str) -> None:
        print(f"\n--- {title}")

    def routed(self) -> None:
        self.step("tasks routed to three queues (.delay + .get)")
        self.check("add(2, 3) on 'default'", add.delay(2, 3).get(timeout=TIMEOUT), 5)
        text = send_welcome_mail.delay("ada@example.com").get(timeout=TIMEOUT)
        print(f"       {text}")
        self.check("send_welcome_mail('ada@example.com') ran from queue", "'mail'" in text, True)
        report = build_report.apply_async(args=("q3-sales", [120.0, 80.5, 99.5])).get(
            timeout=TIMEOUT
        )
        self.check(
            "build_report('q3-sales', [...]) on 'reports'",
            report,
            {"report": "q3-sales", "count": 3, "total": 300.0, "mean": 100.0},
        )

    def failing(self) -> None:
        self.step("a failing task: .get() re-raises the worker's exception")
        result = divide.delay(1, 0)
        try:
            value = result.get(timeout=TIMEOUT)
        except ZeroDivisionError as exc:
            print(f"  ok   divide(1, 0) raised {type(exc).__name__}: {exc}")
            print(f"       state={result.state}; remote traceback ends with:")
            for line in (result.traceback or "").rstrip().splitlines()[-3:]:
                print(f"         | {line}")
        except Exception as exc:  # anything else is a demo failure
            print(f"  FAIL divide(1, 0) raised {type(exc).__name__}: {exc}")
            self.failures.append("divide(1, 0)")
        else:
            print(f"  FAIL divide(1, 0) returned {value!r} instead of raising")
            self.failures.append("divide(1, 0)")

    async def _async_part(self) -> None:
        try:
            r1 = await add.adelay(20, 22)
            r2 = await slow_square.aapply_async(args=(12,))
            self.check("await add.adelay(20, 22) ... await .aget()", await r1.aget(TIMEOUT), 42)
            self.check("async def task slow_square(12)", await r2.aget(TIMEOUT), 144)
        finally:
            await app.aclose()

    def async_producer(self) -> None:
        self.step("an asyncio producer (adelay / aget, aio-pika)")
        asyncio.run(self._async_part())

    def batch(self, n: int = 1000) -> None:
        self.step(f"with app.batch(): {n} tasks published without a round trip each")
        started = time.monotonic()
        with app.batch():
            results = [add.delay(i, i) for i in range(n)]
        published = time.monotonic() - started
        values = [r.get(timeout=TIMEOUT) for r in results]
        finished = time.monotonic() - started
        print(
            f"       published and confirmed in {published:.2f}s, "
            f"all {n} results back after {finished:.2f}s"
        )
        self.check(f"sum of add(i, i) for i < {n}", sum(values), n * (n - 1))

    def run(self) -> int:
        print(f"producer connected to {app.settings.broker.redacted()}")
        try:
            self.routed()
            self.failing()
            self.async_producer()
            self.batch()
        finally:
            app.close()
        if self.failures:
            print(f"\n{len(self.failures)} demo step(s) FAILED: {', '.join(self.failures)}")
            return 1
        print("\nall demo steps succeeded")
        return 0


if __name__ == "__main__":
    sys.exit(Demo().run())
