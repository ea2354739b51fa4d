"""Prometheus metrics of one worker (``amqptasks worker --metrics-port 9808``).

Served with the official client (``pip install amqptasks[metrics]``) from a
registry of the worker's own, on ``/metrics`` of the port given. Names follow
Prometheus' conventions (``_total`` counters, ``_seconds`` histograms, base
units); docs/monitoring.md maps them to celery-exporter's and Flower's.

==================================== ===========================================================
metric                               meaning
==================================== ===========================================================
``amqptasks_tasks_total``            calls settled, by ``task`` and ``state`` (succeeded, failed,
                                     retried, rejected, revoked, requeued, deferred)
``amqptasks_task_runtime_seconds``   how long calls ran, by ``task``
``amqptasks_task_queue_wait_seconds`` from the call's ``eta`` (or, without one, from its arrival
                                     at the worker) until it started, by ``task``
``amqptasks_tasks_active``           calls running now
``amqptasks_tasks_prefetched``       calls received and not started yet
``amqptasks_task_retries_total``     retries published, by ``task``
``amqptasks_dead_letters_total``     messages dead-lettered, by ``task`` and ``reason``
``amqptasks_queue_messages``         messages waiting in each consumed queue and its DLQ
``amqptasks_queue_consumers``        consumers of each consumed queue
``amqptasks_delay_messages``         messages waiting in the delay levels, all levels together
==================================== ===========================================================

The per-call figures are counted in plain Python (:mod:`amqptasks.control.tally`)
and exported when scraped. A call is counted once, on the worker's event loop, as it
is settled: its state, its runtime and how long it waited to start (both known
then). The calls decoded and not settled yet are held in a set, and as Prometheus
scrapes, those started are "active", the others "prefetched". So the metrics need
no hook as a call starts, and cost the pool threads nothing. Queue depths are read
every :data:`POLL_INTERVAL` seconds with passive declares on a connection of the
metrics' own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from amqptasks.control.tally import Tally, TallyCollector
from amqptasks.exceptions import ConfigError
from amqptasks.logging import get_logger
from amqptasks.protocol.envelope import parse_time
from amqptasks.topology import delays, names
from amqptasks.transport import aio
from amqptasks.worker.decisions import (
    ENDS_A_RUN,
    DeadLetter,
    Defer,
    Finish,
    Requeue,
    RetryLater,
    Skip,
)
from amqptasks.worker.extension import Extension

if TYPE_CHECKING:
    from amqptasks.worker.decisions import Decision
    from amqptasks.worker.extension import WorkerContext
    from amqptasks.worker.state import MessageState
    from amqptasks.worker.worker import Worker

__all__ = ["Metrics", "serve_metrics"]

log = get_logger(__name__)

#: Seconds between two looks at the queues' depths (the first is 2 s after start).
POLL_INTERVAL = 15.0
#: Buckets (seconds) of both histograms: 5 ms to 10 min.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def serve_metrics(worker: Worker, port: int, *, address: str = "0.0.0.0") -> Metrics:
    """Add a :class:`Metrics` extension serving on ``port`` to ``worker`` (before it starts).

    Raises:
        ConfigError: prometheus-client is not installed.
    """
    metrics = Metrics(port, address=address)
    worker.extensions.append(metrics)
    return metrics


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "--metrics-port needs prometheus-client: pip install 'amqptasks[metrics]'"
        ) from exc
    return prometheus_client


def _eta_seconds(eta: str | None) -> float | None:
    when = parse_time(eta)
    return when.timestamp() if when is not None else None


async def _depth(connection: Any, queue: str) -> tuple[int, int] | None:
    """``(messages, consumers)`` of ``queue``; None when it does not exist (or the broker
    is away): a passive declare, on a channel of its own since a 404 closes it."""
    try:
        channel = await connection.channel()
    except Exception:
        return None
    try:
        declared = await channel.declare_queue(queue, passive=True)
        result = declared.declaration_result
        return int(result.message_count or 0), int(result.consumer_count or 0)
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            if not channel.is_closed:
                await channel.close()


class Metrics(Extension):
    """Counts what the worker does and serves it to Prometheus (module docstring).

    Args:
        port: TCP port of the ``/metrics`` endpoint (0: any free one; see :attr:`port`).
        address: Interface to listen on (default: all IPv4).
    """

    def __init__(self, port: int, *, address: str = "0.0.0.0") -> None:
        client = _client()
        self.requested_port = port
        self.address = address
        #: The port served on, once started.
        self.port: int | None = None
        self.registry = client.CollectorRegistry()
        registry = self.registry
        #: The per-call figures, exported at scrape time (:mod:`amqptasks.control.tally`).
        self.tally = Tally(BUCKETS)
        registry.register(TallyCollector(self.tally, before=self.count_held))
        #: Calls decoded and not settled yet (written on the loop, copied by a scrape).
        self._held: set[MessageState] = set()
        self.queue_messages = client.Gauge(
            "amqptasks_queue_messages", "Messages waiting", ["queue"], registry=registry
        )
        self.queue_consumers = client.Gauge(
            "amqptasks_queue_consumers", "Consumers", ["queue"], registry=registry
        )
        self.delay_messages = client.Gauge(
            "amqptasks_delay_messages", "Messages in the delay levels", registry=registry
        )
        self._server: Any = None
        self._polling: asyncio.Task[None] | None = None

    async def on_worker_start(self, worker: WorkerContext) -> None:
        client = _client()
        served = client.start_http_server(
            self.requested_port, addr=self.address, registry=self.registry
        )
        self._server = served[0] if isinstance(served, tuple) else None
        self.port = self._server.server_port if self._server is not None else self.requested_port
        log.info("metrics served", port=self.port)
        self._polling = asyncio.ensure_future(self._poll(worker))

    async def _poll(self, worker: WorkerContext) -> None:
        settings = worker.app.settings
        try:
            connection = await aio.connect(
                settings.broker, f"amqptasks worker {worker.hostname} (metrics)", log_outages=False
            )
        except Exception as exc:
            log.warning("queue depths not measured", error=f"{type(exc).__name__}: {exc}")
            return
        levels = [names.delay_level(settings.delay_prefix, n) for n in range(delays.LEVELS)]
        wait = 2.0
        try:
            while not worker.stopping.is_set():
                with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                    await asyncio.wait_for(worker.stopping.wait(), wait)
                if worker.stopping.is_set():
                    return
                wait = POLL_INTERVAL
                for queue in worker.options.queues:
                    depth = await _depth(connection, queue)
                    if depth is not None:
                        self.queue_messages.labels(queue).set(depth[0])
                        self.queue_consumers.labels(queue).set(depth[1])
                    dlq = await _depth(connection, names.dead_letter_queue(queue))
                    if dlq is not None:
                        self.queue_messages.labels(names.dead_letter_queue(queue)).set(dlq[0])
                waiting = 0
                for level in levels:
                    depth = await _depth(connection, level)
                    waiting += depth[0] if depth is not None else 0
                self.delay_messages.set(waiting)
        finally:
            with contextlib.suppress(Exception):
                await connection.close()

    async def on_worker_stop(self, worker: WorkerContext) -> None:
        if self._polling is not None:
            self._polling.cancel()
            with contextlib.suppress(BaseException):
                await self._polling
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def on_decoded(self, state: MessageState) -> Decision | None:
        self._held.add(state)
        return None

    def before_settle(self, state: MessageState, decision: Decision) -> None:
        self._held.discard(state)
        tally = self.tally
        message = state.message
        name = message.task if message is not None else "unknown"
        started = state.started_at
        if started is None:
            runtime = waited = None
        else:
            when = time.time()
            runtime = when - started if when > started else 0.0
            # From the call's ``eta`` or, without one, from its arrival.
            since = _eta_seconds(message.eta) if message is not None and message.eta else None
            if since is None:
                since = state.received_at
            waited = started - since if started > since else 0.0
        stage = _stage(decision, state)
        tally.settled(name, stage, runtime, waited)
        if not isinstance(decision, Finish):
            if isinstance(decision, RetryLater):
                tally.retried(name)
            elif isinstance(decision, DeadLetter):
                tally.dead_lettered(name, decision.reason)

    def count_held(self) -> None:
        """Count the calls held now into the tally's ``active`` and ``prefetched`` (as
        Prometheus scrapes, in the exporter's thread)."""
        held = list(self._held)  # one C call: the loop does not change the set meanwhile
        active = sum(1 for state in held if state.started_at is not None)
        self.tally.active = active
        self.tally.prefetched = len(held) - active


def _stage(decision: Decision, state: MessageState) -> str:
    """The ``state`` label of a settled call."""
    if state.outcome is not None and isinstance(decision, ENDS_A_RUN):
        return "succeeded" if state.outcome.exception is None else "failed"
    if isinstance(decision, RetryLater):
        return "retried"
    if isinstance(decision, Skip):
        return "revoked"
    if isinstance(decision, Requeue):
        return "requeued"
    if isinstance(decision, Defer):
        return "deferred"
    return "rejected"
