"""What one consume-and-ack costs in each AMQP client stack amqptasks could build on.

    python -m tests.bench.client_stacks [--n 20000] [--prefetch 64] [--repeat 3]
                                        [--stacks aio-pika,aiormq,pika-asyncio,...]

Starts its own node. For each stack, N task messages (the raw baseline's: body and
Celery's 16 headers, see ``peer_raw``) are published to a fresh queue, then a
fresh process consumes them with manual acks (one ``basic.ack`` per delivery,
prefetch ``--prefetch``) and nothing else, and prints its CPU time per message
(user + system, first delivery to last ack) and its rate. This is why the
worker consumes through pika's asyncio adapter (issue 6): the same loop, a
quarter of aio-pika's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

from amqptasks.testing import RabbitNode
from tests.bench.harness import PY, REPO, median

STACKS = ("aio-pika", "aiormq", "pika-asyncio", "pika-select", "pika-blocking")


class _Clock:
    """CPU and wall time from the first delivery on."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def start(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def result(self, n: int) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        return {"rate": n / wall, "cpu_us": (time.process_time() - self.cpu) / n * 1e6}


async def _aio_pika(url: str, queue: str, n: int, prefetch: int) -> dict[str, float]:
    import aio_pika

    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=False)
    await channel.set_qos(prefetch_count=prefetch)
    declared = await channel.declare_queue(queue, durable=True)
    done = asyncio.Event()
    clock, seen = _Clock(), 0
    acks: set[asyncio.Future[Any]] = set()

    def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal seen
        if not seen:
            clock.start()
        seen += 1
        ack = asyncio.ensure_future(message.ack())
        acks.add(ack)
        ack.add_done_callback(acks.discard)
        if seen == n:
            done.set()

    await declared.consume(on_message, no_ack=False)
    await done.wait()
    result = clock.result(n)
    await connection.close()
    return result


async def _aiormq(url: str, queue: str, n: int, prefetch: int) -> dict[str, float]:
    import aiormq
    import aiormq.abc

    connection = await aiormq.connect(url)
    channel = await connection.channel(publisher_confirms=False)
    await channel.basic_qos(prefetch_count=prefetch)
    done = asyncio.Event()
    clock, seen = _Clock(), 0

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        nonlocal seen
        if not seen:
            clock.start()
        seen += 1
        await channel.basic_ack(message.delivery_tag or 0)
        if seen == n:
            done.set()

    await channel.basic_consume(queue, on_message, no_ack=False)
    await done.wait()
    result = clock.result(n)
    await connection.close()
    return result


def _pika_callbacks(url: str, queue: str, n: int, prefetch: int, on_asyncio: bool) -> Any:
    import pika
    from pika.adapters.asyncio_connection import AsyncioConnection

    clock, seen, out = _Clock(), 0, {}
    loop = asyncio.new_event_loop() if on_asyncio else None

    def on_message(channel: Any, method: Any, _properties: Any, _body: bytes) -> None:
        nonlocal seen
        if not seen:
            clock.start()
        seen += 1
        channel.basic_ack(method.delivery_tag)
        if seen == n:
            out.update(clock.result(n))
            channel.connection.close()

    def on_channel(channel: Any) -> None:
        channel.basic_qos(
            prefetch_count=prefetch, callback=lambda _f: channel.basic_consume(queue, on_message)
        )

    def on_closed(connection: Any, _reason: Any) -> None:
        if loop is not None:
            loop.stop()
        else:
            connection.ioloop.stop()

    parameters = pika.URLParameters(url)
    if loop is not None:
        AsyncioConnection(
            parameters,
            on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
            on_close_callback=on_closed,
            custom_ioloop=loop,
        )
        loop.run_forever()
    else:
        connection = pika.SelectConnection(
            parameters,
            on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
            on_close_callback=on_closed,
        )
        connection.ioloop.start()
    return out


def _pika_blocking(url: str, queue: str, n: int, prefetch: int) -> dict[str, float]:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    clock = _Clock()
    for seen, (method, _properties, _body) in enumerate(channel.consume(queue), start=1):
        if seen == 1:
            clock.start()
        channel.basic_ack(method.delivery_tag)
        if seen == n:
            break
    result = clock.result(n)
    connection.close()
    return result


def consume(stack: str, url: str, queue: str, n: int, prefetch: int) -> dict[str, float]:
    """Consume and ack ``n`` messages of ``queue`` with ``stack``; its rate and CPU."""
    if stack == "aio-pika":
        return asyncio.run(_aio_pika(url, queue, n, prefetch))
    if stack == "aiormq":
        return asyncio.run(_aiormq(url, queue, n, prefetch))
    if stack in ("pika-asyncio", "pika-select"):
        return dict(_pika_callbacks(url, queue, n, prefetch, stack == "pika-asyncio"))
    if stack == "pika-blocking":
        return _pika_blocking(url, queue, n, prefetch)
    raise ValueError(f"unknown stack {stack!r}")


def _child(stack: str, url: str, queue: str, n: int, prefetch: int) -> dict[str, float]:
    code = (
        "import json, sys; from tests.bench.client_stacks import consume; "
        "print(json.dumps(consume(*sys.argv[1:4], int(sys.argv[4]), int(sys.argv[5]))))"
    )
    out = subprocess.run(
        [PY, "-c", code, stack, url, queue, str(n), str(prefetch)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stacks", default=",".join(STACKS))
    args = parser.parse_args()
    stacks = args.stacks.split(",")
    node = RabbitNode().start()
    try:
        os.environ["BENCH_AMQP_URL"] = node.amqp_url
        from tests.bench import peer_raw

        runs: dict[str, list[dict[str, float]]] = {stack: [] for stack in stacks}
        for run in range(args.repeat):
            for stack in stacks:  # interleaved, as tests.bench.run does
                queue = f"stacks.{stack}.{run}"
                peer_raw.cmd_prepublish(args.n, queue)
                figures = _child(stack, node.amqp_url, queue, args.n, args.prefetch)
                runs[stack].append(figures)
                print(
                    f"run {run + 1}/{args.repeat} {stack:14s} {figures['rate']:8,.0f} msg/s "
                    f"{figures['cpu_us']:6.1f} µs CPU/msg",
                    flush=True,
                )
        print(f"\nmedian of {args.repeat}, N = {args.n:,}, prefetch {args.prefetch}:")
        print("| stack | msg/s | CPU µs/msg |\n|---|--:|--:|")
        for stack in stacks:
            rate = median([r["rate"] for r in runs[stack]])
            cpu = median([r["cpu_us"] for r in runs[stack]])
            print(f"| {stack} | {rate:,.0f} | {cpu:.1f} |")
    finally:
        node.stop()


if __name__ == "__main__":
    sys.exit(main())
