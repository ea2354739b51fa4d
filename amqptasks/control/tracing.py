"""OpenTelemetry spans for publishing and running tasks (optional: ``amqptasks[tracing]``).

Compatible with ``opentelemetry-instrumentation-celery``: the producer's span is
``apply_async/<task>`` (kind PRODUCER) and its context travels in the task
message's headers (W3C ``traceparent``/``tracestate``, through the globally
configured propagator); the worker's span is ``run/<task>`` (kind CONSUMER), a
child of the producer's. A Celery worker with that instrumentation continues a
trace started by an amqptasks producer, and the other way round, because Celery
turns message headers into ``task.request`` attributes, which is where the
instrumentation reads them.

Producers: call :func:`instrument_producers` once per process. Workers: load the
:class:`Tracing` extension (``--extension amqptasks.control.tracing:Tracing``).
The worker's span is not made current inside the task body (it may run in a pool
thread or process); spans the task opens itself start their own trace unless it
passes the context on.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from amqptasks import signals
from amqptasks.exceptions import ConfigError
from amqptasks.worker.decisions import DeadLetter, Finish, RetryLater, Skip
from amqptasks.worker.extension import Extension

if TYPE_CHECKING:
    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.state import MessageState

__all__ = ["Tracing", "instrument_producers", "uninstrument_producers"]

_SPAN = "tracing.span"
_open: dict[str, Any] = {}
_lock = threading.Lock()


def _otel() -> tuple[Any, Any]:
    try:
        from opentelemetry import propagate, trace
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "tracing needs opentelemetry-api: pip install 'amqptasks[tracing]'"
        ) from exc
    return propagate, trace


def _before_publish(
    sender: object, task_id: str, exchange: str, routing_key: str, headers: Any, **_: Any
) -> None:
    propagate, trace = _otel()
    span = trace.get_tracer("amqptasks").start_span(
        f"apply_async/{sender}",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "celery.action": "apply_async",
            "celery.task_name": str(sender),
            "messaging.message.id": task_id,
            "messaging.destination.name": routing_key,
            "messaging.system": "rabbitmq",
        },
    )
    if isinstance(headers, dict):
        propagate.inject(headers, context=trace.set_span_in_context(span))
    with _lock:
        _open[task_id] = span


def _after_publish(sender: object, task_id: str, **_: Any) -> None:
    with _lock:
        span = _open.pop(task_id, None)
    if span is not None:
        span.end()


def instrument_producers() -> None:
    """Open a PRODUCER span per task published in this process and carry its context."""
    _otel()
    signals.before_publish.connect(_before_publish)
    signals.after_publish.connect(_after_publish)


def uninstrument_producers() -> None:
    """Undo :func:`instrument_producers`."""
    signals.before_publish.disconnect(_before_publish)
    signals.after_publish.disconnect(_after_publish)


class Tracing(Extension):
    """A CONSUMER span per call, child of the producer's span (module docstring)."""

    def __init__(self) -> None:
        self._propagate, self._trace = _otel()
        self._tracer = self._trace.get_tracer("amqptasks")

    def wants_start(self, state: MessageState) -> bool:
        return True

    def on_start(self, state: MessageState) -> None:
        message = state.message
        name = message.task if message is not None else "unknown"
        headers = state.delivery.headers or {}
        carrier = {k: v for k, v in headers.items() if isinstance(v, str)}
        parent = self._propagate.extract(carrier)
        span = self._tracer.start_span(
            f"run/{name}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes={
                "celery.action": "run",
                "celery.task_name": name,
                "messaging.message.id": state.task_id or "",
                "messaging.destination.name": state.queue,
                "messaging.system": "rabbitmq",
            },
        )
        state.note(_SPAN, span)

    def before_settle(self, state: MessageState, decision: Decision) -> None:
        span = state.noted(_SPAN)
        if span is None:
            return
        outcome = state.outcome
        state_name = {Finish: "SUCCESS", RetryLater: "RETRY", Skip: "REVOKED"}.get(
            type(decision), "FAILURE"
        )
        if isinstance(decision, Finish | DeadLetter) and outcome is not None:
            state_name = "SUCCESS" if outcome.exception is None else "FAILURE"
            if outcome.exception is not None:
                span.record_exception(outcome.exception)
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.set_attribute("celery.state", state_name)
        span.end()
