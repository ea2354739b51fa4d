"""Raw pika / aio-pika baselines: the least work for the same messages.

Publishers send the message an amqptasks/Celery v2 no-op task would carry: the
body (``[[i, payload], {}, embed]`` as JSON, ~170 bytes) and the same properties
(Celery's 16 headers, correlation id, content type and encoding), persistent,
``mandatory``, to a durable queue, with publisher confirms; the header table is
built with the least work (a counter for the task id, the rest constant). With
``bare=True`` they send the body alone (the reference rows "body only"), which
costs the broker and both clients less. Consumers ack every delivery manually
with a prefetch window and do nothing else. The RPC pair uses RabbitMQ's direct
reply-to (``amq.rabbitmq.reply-to``). Broker URL from ``BENCH_AMQP_URL``.

Consumers (``consume``, ``consume_pika``, ``rpc_server``) run until SIGTERM.
To be timed the same way as task workers without doing per-message work, the
counting consumer appends one byte to ``BENCH_COUNTER`` at its first delivery
and the rest when the ``n``-th has been acked.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import threading
import time
from typing import Any

import aio_pika
import pika

from tests.bench import marks

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
CONTENT_TYPE = "application/json"
REPLY_TO = "amq.rabbitmq.reply-to"


def _url() -> str:
    return os.environ["BENCH_AMQP_URL"]


def body(i: int) -> bytes:
    """The body of no-op task number ``i``."""
    return json.dumps([[i, marks.PAYLOAD], {}, EMBED]).encode()


_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"


def headers(i: int, task_id: str) -> dict[str, Any]:
    """Celery protocol v2 headers of no-op task number ``i``, as amqptasks sends them."""
    return {
        "lang": "py",
        "task": "bench.noop",
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": repr((i, marks.PAYLOAD)),
        "kwargsrepr": "{}",
        "origin": _ORIGIN,
        "ignore_result": True,
    }


def task_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012x}"


def properties(i: int, bare: bool = False) -> pika.BasicProperties:
    """The properties of message ``i``: a task's (see the module docstring), or bare."""
    if bare:
        return pika.BasicProperties(content_type=CONTENT_TYPE, delivery_mode=2)
    tid = task_id(i)
    return pika.BasicProperties(
        content_type=CONTENT_TYPE,
        content_encoding="utf-8",
        delivery_mode=2,
        correlation_id=tid,
        headers=headers(i, tid),
    )


def _declare(queue: str, arguments: dict[str, Any] | None = None) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(_url()))
    try:
        connection.channel().queue_declare(queue, durable=True, arguments=arguments)
    finally:
        connection.close()


# -- publishers -------------------------------------------------------------------------------


def publish_pipelined(
    n: int,
    routing_key: str,
    bodies: Any = body,
    window: int = 1000,
    timeout: float = 300.0,
    bare: bool = False,
) -> dict[str, Any]:
    """One pika ``SelectConnection``: keep ``window`` unconfirmed publishes in flight."""
    state: dict[str, Any] = {"sent": 0, "acked": 0, "nacked": 0, "error": None}
    outstanding: collections.deque[int] = collections.deque()
    early: set[int] = set()
    holder: dict[str, Any] = {}

    def top_up() -> None:
        channel = holder["channel"]
        while state["sent"] < n and len(outstanding) + len(early) < window:
            i = state["sent"]
            channel.basic_publish("", routing_key, bodies(i), properties(i, bare), mandatory=True)
            state["sent"] += 1
            outstanding.append(state["sent"])

    def on_confirm(frame: Any) -> None:
        method = frame.method
        tag = method.delivery_tag
        if isinstance(method, pika.spec.Basic.Nack):
            state["nacked"] += 1
        if method.multiple:
            while outstanding and outstanding[0] <= tag:
                outstanding.popleft()
                state["acked"] += 1
        elif outstanding and outstanding[0] == tag:
            outstanding.popleft()
            state["acked"] += 1
        else:
            early.add(tag)
        while outstanding and outstanding[0] in early:
            early.discard(outstanding.popleft())
            state["acked"] += 1
        if state["acked"] >= n:
            state["t_end"] = time.monotonic()
            state["cpu_end"] = time.process_time()
            holder["connection"].close()
        else:
            top_up()

    def start(_frame: Any) -> None:
        state["t_start"] = time.monotonic()
        state["cpu_start"] = time.process_time()
        top_up()

    def on_channel(channel: Any) -> None:
        holder["channel"] = channel
        channel.confirm_delivery(ack_nack_callback=on_confirm, callback=start)

    def on_open(connection: Any) -> None:
        connection.channel(on_open_callback=on_channel)

    def on_open_error(connection: Any, error: Any) -> None:
        state["error"] = f"open failed: {error!r}"
        connection.ioloop.stop()

    def on_closed(connection: Any, _reason: Any) -> None:
        connection.ioloop.stop()

    def abort() -> None:
        state["error"] = f"timed out after {timeout}s with {state['acked']}/{n} confirmed"
        holder["connection"].close()

    connection = pika.SelectConnection(
        pika.URLParameters(_url()),
        on_open_callback=on_open,
        on_open_error_callback=on_open_error,
        on_close_callback=on_closed,
    )
    holder["connection"] = connection
    connection.ioloop.call_later(timeout, abort)
    connection.ioloop.start()
    if state["error"] or "t_end" not in state:
        raise RuntimeError(state["error"] or "connection closed before every confirm arrived")
    if state["nacked"]:
        raise RuntimeError(f"{state['nacked']} publishes were nacked")
    elapsed = state["t_end"] - state["t_start"]
    return {
        "rate": n / elapsed,
        "elapsed": elapsed,
        "t_start": state["t_start"],
        "cpu_us_per_msg": (state["cpu_end"] - state["cpu_start"]) / n * 1e6,
    }


def _publish_blocking(n: int, queue: str, threads: int, bare: bool) -> dict[str, Any]:
    per = n // threads
    channels = []
    for _ in range(threads):
        connection = pika.BlockingConnection(pika.URLParameters(_url()))
        channel = connection.channel()
        channel.confirm_delivery()
        channels.append((connection, channel))

    def run(channel: Any, offset: int) -> None:
        for i in range(offset, offset + per):
            # Waits for the confirm.
            channel.basic_publish("", queue, body(i), properties(i, bare), mandatory=True)

    pool = [
        threading.Thread(target=run, args=(channel, t * per))
        for t, (_connection, channel) in enumerate(channels)
    ]
    cpu = time.process_time()
    started = time.monotonic()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu
    for connection, _channel in channels:
        connection.close()
    total = per * threads
    return {
        "rate": total / elapsed,
        "elapsed": elapsed,
        "t_start": started,
        "cpu_us_per_msg": cpu / total * 1e6,
    }


async def _publish_async(n: int, queue: str, concurrency: int, bare: bool) -> dict[str, Any]:
    connection = await aio_pika.connect(_url())
    channel = await connection.channel(publisher_confirms=True)
    exchange = channel.default_exchange
    counter = iter(range(n))

    async def lane() -> None:
        for i in counter:
            tid = None if bare else task_id(i)
            await exchange.publish(
                aio_pika.Message(
                    body(i),
                    content_type=CONTENT_TYPE,
                    content_encoding=None if bare else "utf-8",
                    correlation_id=tid,
                    headers=None if tid is None else headers(i, tid),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=queue,
                mandatory=True,
            )

    cpu = time.process_time()
    started = time.monotonic()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu
    await connection.close()
    return {
        "rate": n / elapsed,
        "elapsed": elapsed,
        "t_start": started,
        "cpu_us_per_msg": cpu / n * 1e6,
    }


def cmd_enqueue(
    n: int,
    queue: str,
    mode: str,
    threads: int = 8,
    concurrency: int = 64,
    window: int = 1000,
    bare: bool = False,
) -> Any:
    """mode: pipelined (SelectConnection) | seq | threads (BlockingConnection,
    a confirm per publish, a connection per thread) | async (aio-pika lanes)."""
    _declare(queue)
    if mode == "pipelined":
        return publish_pipelined(n, queue, window=window, bare=bare)
    if mode == "seq":
        return _publish_blocking(n, queue, 1, bare)
    if mode == "threads":
        return _publish_blocking(n, queue, threads, bare)
    if mode == "async":
        return asyncio.run(_publish_async(n, queue, concurrency, bare))
    raise ValueError(f"unknown mode {mode!r}")


def cmd_prepublish(n: int, queue: str, task: str = "", bare: bool = False) -> Any:
    """Fill ``queue`` with ``n`` messages (pipelined confirms)."""
    _declare(queue)
    return publish_pipelined(n, queue, bare=bare)


def cmd_delayed(n: int, queue: str, run: str, countdown: float) -> Any:
    """Broker-side delay, the least machinery: a queue with ``x-message-ttl`` dead-lettering
    to ``queue``. Bodies carry ``[run, eta]``; ``consume`` in ``late`` mode records them."""
    wait = f"{queue}.wait"
    _declare(queue)
    _declare(
        wait,
        {
            "x-message-ttl": int(countdown * 1000),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue,
        },
    )
    started = time.monotonic()
    publish_pipelined(
        n, wait, bodies=lambda _i: json.dumps([run, time.time() + countdown]).encode(), bare=True
    )
    return {"publish_s": time.monotonic() - started}


# -- consumers --------------------------------------------------------------------------------


async def _until_sigterm() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _consume(queue: str, n: int, prefetch: int, mode: str) -> None:
    connection = await aio_pika.connect(_url())
    channel = await connection.channel(publisher_confirms=False)
    await channel.set_qos(prefetch_count=prefetch)
    declared = await channel.declare_queue(queue, durable=True)
    seen = 0

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal seen
        if mode == "late":
            run, eta = json.loads(message.body)
            marks.late(run, eta)
        await message.ack()
        seen += 1
        if mode == "late":
            pass
        elif seen == 1:
            marks.done()
        elif seen == n:
            marks.done(n - 1)

    await declared.consume(on_message, no_ack=False)
    marks.ready("raw aio-pika")
    await _until_sigterm()
    await connection.close()


def cmd_consume(queue: str, n: int = 0, prefetch: int = 16, mode: str = "count") -> Any:
    """aio-pika consumer: prefetch ``prefetch``, ack each delivery, no work (until SIGTERM)."""
    asyncio.run(_consume(queue, n, prefetch, mode))
    return {}


def cmd_consume_pika(queue: str, n: int = 0, prefetch: int = 16, mode: str = "count") -> Any:
    """The same with pika's ``BlockingConnection`` (reference: pika is cheaper per message)."""
    connection = pika.BlockingConnection(pika.URLParameters(_url()))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    channel.queue_declare(queue, durable=True)
    seen = 0

    def on_message(ch: Any, method: Any, _props: Any, _body: bytes) -> None:
        nonlocal seen
        ch.basic_ack(method.delivery_tag)
        seen += 1
        if seen == 1:
            marks.done()
        elif seen == n:
            marks.done(n - 1)

    def stop(*_args: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    channel.basic_consume(queue, on_message)
    marks.ready("raw pika")
    try:
        channel.start_consuming()
    except KeyboardInterrupt:
        pass
    finally:
        if connection.is_open:
            connection.close()
    return {}


async def _rpc_server(queue: str, prefetch: int) -> None:
    connection = await aio_pika.connect(_url())
    channel = await connection.channel(publisher_confirms=False)
    await channel.set_qos(prefetch_count=prefetch)
    declared = await channel.declare_queue(queue, durable=True)
    exchange = channel.default_exchange

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        args = json.loads(message.body)[0]
        await exchange.publish(
            aio_pika.Message(
                json.dumps({"status": "SUCCESS", "result": args[0]}).encode(),
                content_type=CONTENT_TYPE,
                correlation_id=message.correlation_id,
            ),
            routing_key=message.reply_to or "",
        )
        await message.ack()

    await declared.consume(on_message, no_ack=False)
    marks.ready("raw rpc server")
    await _until_sigterm()
    await connection.close()


def cmd_rpc_server(queue: str, prefetch: int = 16) -> Any:
    """Echo server: reply to ``reply_to`` with the correlation id, then ack (until SIGTERM)."""
    asyncio.run(_rpc_server(queue, prefetch))
    return {}


class _RpcClient:
    """Direct reply-to client: publish with confirms, match replies by correlation id."""

    async def open(self) -> None:
        self.connection = await aio_pika.connect(_url())
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.waiting: dict[str, asyncio.Future[Any]] = {}
        replies = await self.channel.get_queue(REPLY_TO, ensure=False)
        await replies.consume(self._on_reply, no_ack=True)
        self.exchange = self.channel.default_exchange
        self.serial = 0

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = self.waiting.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(json.loads(message.body)["result"])

    async def call(self, queue: str, i: int) -> Any:
        self.serial += 1
        correlation_id = str(self.serial)
        future = asyncio.get_running_loop().create_future()
        self.waiting[correlation_id] = future
        await self.exchange.publish(
            aio_pika.Message(
                body(i),
                content_type=CONTENT_TYPE,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                correlation_id=correlation_id,
                reply_to=REPLY_TO,
            ),
            routing_key=queue,
        )
        return await asyncio.wait_for(future, 30)

    async def close(self) -> None:
        await self.connection.close()


def cmd_rpc_seq(n: int, queue: str, warmup: int = 50) -> Any:
    """``n`` sequential round trips through the echo server: ms each."""

    async def main() -> dict[str, Any]:
        client = _RpcClient()
        await client.open()
        for i in range(warmup):
            await client.call(queue, i)
        latencies = []
        for i in range(n):
            started = time.perf_counter()
            value = await client.call(queue, i)
            latencies.append((time.perf_counter() - started) * 1000)
            assert value == i, value
        await client.close()
        return {"latencies_ms": latencies}

    return asyncio.run(main())


def cmd_rpc_async(n: int, queue: str, warmup: int = 50) -> Any:
    """``n`` concurrent round trips: calls/s."""

    async def main() -> dict[str, Any]:
        client = _RpcClient()
        await client.open()
        await asyncio.gather(*(client.call(queue, i) for i in range(warmup)))
        started = time.monotonic()
        values = await asyncio.gather(*(client.call(queue, i) for i in range(n)))
        elapsed = time.monotonic() - started
        assert values == list(range(n))
        await client.close()
        return {"rate": n / elapsed, "elapsed": elapsed}

    return asyncio.run(main())
