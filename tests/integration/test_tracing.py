"""OpenTelemetry: one trace spans the producer's publish and the worker's run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from amqptasks.control.tracing import Tracing, instrument_producers, uninstrument_producers
from amqptasks.worker import Worker

exporter = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider() -> None:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)


def test_a_trace_spans_the_producer_and_the_worker(core: Any, queue_name: str) -> None:
    instrument_producers()

    async def run() -> tuple[int, str]:
        worker = Worker(core.app, queues=[queue_name], concurrency=2, extensions=[Tracing()])
        await worker.start()
        try:
            result = await core.add.aapply_async((2, 3), queue=queue_name)
            return await result.aget(timeout=30), result.id
        finally:
            worker.stop()
            await worker._shutdown()

    try:
        value, task_id = asyncio.run(run())
    finally:
        uninstrument_producers()
    assert value == 5
    spans = {span.name: span for span in exporter.get_finished_spans()}
    produce = spans[f"apply_async/{core.add.name}"]
    consume = spans[f"run/{core.add.name}"]
    assert produce.kind == trace.SpanKind.PRODUCER
    assert consume.kind == trace.SpanKind.CONSUMER
    assert consume.context.trace_id == produce.context.trace_id
    assert consume.parent is not None and consume.parent.span_id == produce.context.span_id
    assert consume.attributes["messaging.message.id"] == task_id
    assert consume.attributes["celery.state"] == "SUCCESS"
