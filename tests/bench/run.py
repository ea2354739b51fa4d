"""amqptasks against Celery, Dramatiq and raw pika / aio-pika, on one private RabbitMQ node.

    python -m tests.bench.run [--n 20000] [--repeat 3] [--only WORKLOAD,...]
                              [--peers amqptasks,celery,dramatiq,raw] [--output docs/benchmarks.md]

Workloads: enqueue, drain, e2e, rpc, delayed, memory (memory is read during drain
and e2e, so ``--only memory`` runs those two). Every figure is the median of
``--repeat`` runs; runs of the peers are interleaved (run 1 of every variant,
then run 2...) so that a noisy minute hits them all alike. The summary, the
targets of issue 6 and every run are printed as Markdown and written to
``--output`` (``-`` to skip writing).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import math
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amqptasks.testing import RabbitNode
from tests.bench import harness
from tests.bench.harness import PY, REPO, Admin, BenchError, Client, Proc

if TYPE_CHECKING:
    from collections.abc import Callable

WORKLOADS = ("enqueue", "drain", "e2e", "rpc", "delayed", "memory")
PEERS = ("amqptasks", "celery", "dramatiq", "raw")
CONCURRENCY = 4
ENQUEUE_THREADS = 8
ASYNC_IN_FLIGHT = 64
RAW_PREFETCH = CONCURRENCY * 4  # what amqptasks (and Celery) use at concurrency 4

HIGHER, LOWER = "higher", "lower"


# -- variants ---------------------------------------------------------------------------------


@dataclass
class Variant:
    key: str
    workload: str
    peer: str
    label: str
    params: dict[str, Any] = field(default_factory=dict)


def _variants() -> list[Variant]:
    v: list[Variant] = []

    def add(workload: str, peer: str, name: str, label: str, **params: Any) -> None:
        v.append(Variant(f"{workload}.{peer}.{name}", workload, peer, label, params))

    # enqueue: N no-op tasks with publisher confirms (unless the label says otherwise)
    add("enqueue", "amqptasks", "seq", "amqptasks apply_async(), 1 thread", mode="seq")
    add("enqueue", "amqptasks", "batch", "amqptasks app.batch(), 1 thread", mode="batch")
    add("enqueue", "amqptasks", "threads", "amqptasks apply_async(), 8 threads", mode="threads")
    add("enqueue", "amqptasks", "async", "amqptasks aapply_async(), 64 in flight", mode="async")
    add("enqueue", "celery", "seq", "celery confirm_publish, 1 thread", mode="seq")
    add("enqueue", "celery", "threads", "celery confirm_publish, 8 threads", mode="threads")
    add(
        "enqueue",
        "celery",
        "seq-noconfirm",
        "celery no confirms (ref), 1 thread",
        mode="seq",
        confirm=False,
    )
    add("enqueue", "dramatiq", "seq", "dramatiq confirm_delivery, 1 thread", mode="seq")
    add("enqueue", "dramatiq", "threads", "dramatiq confirm_delivery, 8 threads", mode="threads")
    add(
        "enqueue",
        "dramatiq",
        "seq-noconfirm",
        "dramatiq no confirms (ref), 1 thread",
        mode="seq",
        confirm=False,
    )
    add(
        "enqueue",
        "dramatiq",
        "threads-noconfirm",
        "dramatiq no confirms (ref), 8 threads",
        mode="threads",
        confirm=False,
    )
    add("enqueue", "raw", "seq", "raw pika Blocking, confirm each, 1 thread", mode="seq")
    add("enqueue", "raw", "pipelined", "raw pika Select, pipelined confirms", mode="pipelined")
    add(
        "enqueue",
        "raw",
        "pipelined-bare",
        "raw pika Select, pipelined confirms, body only (ref)",
        mode="pipelined",
        bare=True,
    )
    add("enqueue", "raw", "threads", "raw pika Blocking, confirm each, 8 threads", mode="threads")
    add("enqueue", "raw", "async", "raw aio-pika, 64 in flight", mode="async")

    # drain: N pre-published no-op tasks, concurrency 4
    add("drain", "amqptasks", "threads", "amqptasks -P threads -c 4", pool="threads")
    add("drain", "amqptasks", "asyncio", "amqptasks -P asyncio -c 4 (async def)", pool="asyncio")
    add(
        "drain",
        "amqptasks",
        "threads-observed",
        "amqptasks -P threads -c 4, events + metrics on",
        pool="threads",
        observed=("events", "metrics"),
    )
    add(
        "drain",
        "amqptasks",
        "threads-events",
        "amqptasks -P threads -c 4, events on (-E)",
        pool="threads",
        observed=("events",),
    )
    add(
        "drain",
        "amqptasks",
        "threads-metrics",
        "amqptasks -P threads -c 4, metrics on (--metrics-port)",
        pool="threads",
        observed=("metrics",),
    )
    add(
        "drain",
        "amqptasks",
        "threads2x2",
        "amqptasks --workers 2 -P threads -c 2",
        pool="threads",
        workers=2,
        concurrency=2,
    )
    add(
        "drain",
        "amqptasks",
        "threads2x4",
        "amqptasks --workers 2 -P threads -c 4",
        pool="threads",
        workers=2,
        concurrency=4,
    )
    # the same drain with signed (and encrypted) messages (#18): producer and worker keyed
    for kind, label in (
        ("ed25519", "Ed25519-signed"),
        ("hmac", "HMAC-SHA256-signed"),
        ("aes", "Ed25519-signed + AES-GCM-encrypted"),
    ):
        add(
            "drain",
            "amqptasks",
            kind,
            f"amqptasks -P threads -c 4, {label}",
            pool="threads",
            security=kind,
        )
    add("drain", "celery", "prefork", "celery -P prefork -c 4", pool="prefork")
    add("drain", "celery", "threads", "celery -P threads -c 4", pool="threads")
    add("drain", "celery", "solo", "celery -P solo", pool="solo")
    add("drain", "dramatiq", "1x4", "dramatiq -p 1 -t 4", processes=1, threads=4)
    add("drain", "dramatiq", "2x2", "dramatiq -p 2 -t 2", processes=2, threads=2)
    add("drain", "dramatiq", "2x4", "dramatiq -p 2 -t 4", processes=2, threads=4)
    add("drain", "raw", "aio", "raw aio-pika consume+ack, prefetch 16", kind="aio")
    add(
        "drain",
        "raw",
        "aio-bare",
        "raw aio-pika consume+ack, prefetch 16, body only (ref)",
        kind="aio",
        bare=True,
    )
    add("drain", "raw", "pika", "raw pika Blocking consume+ack (ref)", kind="pika")

    # end to end: the worker is idle (idle RSS read), then one thread publishes N with confirms
    add(
        "e2e",
        "amqptasks",
        "threads",
        "amqptasks threads -c 4 + app.batch()",
        pool="threads",
        mode="batch",
    )
    add(
        "e2e",
        "celery",
        "threads",
        "celery threads -c 4 + confirm_publish",
        pool="threads",
        mode="seq",
    )
    add(
        "e2e",
        "dramatiq",
        "2x2",
        "dramatiq -p 2 -t 2 + confirm_delivery",
        processes=2,
        threads=2,
        mode="seq",
    )
    add("e2e", "raw", "aio", "raw aio-pika consumer + pika pipelined", kind="aio", mode="pipelined")

    # rpc: sequential delay().get() and concurrent async calls through an echo task
    add("rpc", "amqptasks", "threads", "amqptasks threads -c 4, reply queue", pool="threads")
    add("rpc", "celery", "threads", "celery threads -c 4, rpc:// backend", pool="threads")
    add("rpc", "raw", "direct", "raw aio-pika, direct reply-to", kind="rpc")

    # delayed: countdown 2 s
    add("delayed", "amqptasks", "threads", "amqptasks countdown (delay levels)", pool="threads")
    add("delayed", "celery", "threads", "celery countdown (ETA held by the worker)", pool="threads")
    add(
        "delayed", "dramatiq", "2x2", "dramatiq delay (.DQ + worker memory)", processes=2, threads=2
    )
    add(
        "delayed",
        "raw",
        "ttl",
        "raw TTL queue dead-lettering to the work queue",
        kind="aio",
        consume_mode="late",
    )
    return v


# -- the bench --------------------------------------------------------------------------------


class Bench:
    def __init__(self, node: RabbitNode, base: Path, args: argparse.Namespace) -> None:
        self.node = node
        self.base = base
        self.args = args
        self.n: int = args.n
        self.admin = Admin(node.amqp_url)
        self.results: dict[str, list[dict[str, Any]]] = {}
        self._serial = 0

    # per run: a fresh queue and a fresh directory for counter/ready/lateness files
    def new_run(self, variant: Variant, r: int) -> tuple[str, Path]:
        self._serial += 1
        queue = f"bench.{variant.key}.{r}.{self._serial}"
        run_dir = self.base / f"run{self._serial:04d}"
        run_dir.mkdir()
        self.cleanup(queue)
        return queue, run_dir

    def env(self, queue: str, run_dir: Path, *, confirm: bool = True) -> dict[str, str]:
        url = self.node.amqp_url
        env = dict(os.environ)
        env.update(
            PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            PYTHONUNBUFFERED="1",
            AMQPTASKS_BROKER_URL=url,
            BENCH_AMQP_URL=url,
            BENCH_DRAMATIQ_BROKER=url,
            BENCH_CELERY_BROKER=f"pyamqp://guest:guest@127.0.0.1:{self.node.amqp_port}//",
            BENCH_QUEUE=queue,
            BENCH_CONFIRM="1" if confirm else "0",
            BENCH_COUNTER=str(run_dir / "counter"),
            BENCH_READY_FILE=str(run_dir / "ready"),
            BENCH_LATENESS=str(run_dir / "lateness"),
        )
        return env

    def security_env(self, kind: str) -> dict[str, str]:
        """Settings (environment) that sign with ``kind`` keys, made once in the run's directory.

        ``aes``: Ed25519 signatures and AES-256-GCM encrypted bodies.
        """
        from amqptasks.security.keys import (
            generate_ed25519,
            generate_encryption_key,
            generate_hmac_secret,
        )

        keys = self.base / "keys"
        keys.mkdir(exist_ok=True)
        signing = keys / ("bench.secret" if kind == "hmac" else "bench.key")
        if not signing.exists():
            material = generate_hmac_secret() if kind == "hmac" else generate_ed25519()[0]
            signing.write_bytes(material)
        env = {
            "AMQPTASKS_SECURITY_SIGNING_KEY_ID": "bench",
            "AMQPTASKS_SECURITY_SIGNING_KEY": f"file:{signing}",
        }
        if kind == "aes":
            aes = keys / "bench.aes"
            if not aes.exists():
                aes.write_bytes(generate_encryption_key())
            env["AMQPTASKS_SECURITY_ENCRYPTION_KEYS"] = f"e1=file:{aes}"
            env["AMQPTASKS_SECURITY_ENCRYPTION_KEY_ID"] = "e1"
        return env

    def cleanup(self, queue: str) -> None:
        suffixes = ("", ".dlq", ".DQ", ".XQ", ".wait")
        self.admin.delete_queues(*(queue + s for s in suffixes))
        self.admin.delete_exchange(queue)  # Celery declares an exchange named as the queue

    def sweep(self) -> None:
        """Delete every queue left on the node (reply queues and the like)."""
        try:
            queues = self.node.queue_depths()
        except Exception as exc:
            print(f"  (sweep failed: {exc})", flush=True)
            return
        self.admin.delete_queues(*queues)

    def timeout(self, n: int) -> float:
        return 60 + n / 100  # never slower than 100 messages/s

    # -- workers --------------------------------------------------------------------------

    def start_worker(
        self, v: Variant, queue: str, run_dir: Path, env: dict[str, str], n: int = 0
    ) -> tuple[Proc, Callable[[], bool]]:
        p = v.params
        ready_file = run_dir / "ready"
        log = run_dir / "worker.log"
        if v.peer == "amqptasks":
            argv = [
                PY,
                "-m",
                "amqptasks",
                "worker",
                "-A",
                harness.app_path(p["pool"]),
                "-Q",
                queue,
                "-P",
                p["pool"],
                "-c",
                str(p.get("concurrency", CONCURRENCY)),
                "-l",
                "info",
            ]
            observed = p.get("observed", ())
            # The cost of operating a fleet (#17): Celery's events, a metrics port.
            if "events" in observed:
                argv += ["-E"]
            if "metrics" in observed:
                argv += ["--metrics-port", str(harness.free_port())]
            workers = p.get("workers", 1)
            if workers > 1:
                # A supervisor and its worker processes: the harness's CPU and RSS
                # figures sum the whole process tree, the processes included.
                argv += ["--workers", str(workers)]

            def ready() -> bool:
                text = log.read_text(errors="replace")
                if workers > 1:
                    return "worker processes running" in text
                return "worker ready" in text

        elif v.peer == "celery":
            pool = p["pool"]
            argv = [
                PY,
                "-m",
                "celery",
                "-A",
                "tests.bench.peer_celery:app",
                "worker",
                "-Q",
                queue,
                "-P",
                pool,
                "-c",
                "1" if pool == "solo" else str(CONCURRENCY),
                "-l",
                "warning",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"bench{self._serial}@%h",
            ]

            def ready() -> bool:
                return harness.ready_lines(ready_file) >= 1

        elif v.peer == "dramatiq":
            processes = p["processes"]
            argv = [
                PY,
                "-m",
                "dramatiq",
                "tests.bench.peer_dramatiq:broker",
                "-p",
                str(processes),
                "-t",
                str(p["threads"]),
                "-Q",
                queue,
            ]

            def ready() -> bool:
                return harness.ready_lines(ready_file) >= processes

        else:
            import json

            kind = p["kind"]
            if kind == "rpc":
                command, kwargs = "rpc_server", {"queue": queue, "prefetch": RAW_PREFETCH}
            else:
                command = "consume" if kind == "aio" else "consume_pika"
                kwargs = {
                    "queue": queue,
                    "n": n,
                    "prefetch": RAW_PREFETCH,
                    "mode": p.get("consume_mode", "count"),
                }
            argv = [PY, "-m", "tests.bench.client", "raw", command, json.dumps(kwargs)]

            def ready() -> bool:
                return harness.ready_lines(ready_file) >= 1

        # Celery's warm shutdown idles ~10 s before it exits: the figures are taken by
        # then and its acks sent (the queue is checked afterwards), so cut it short.
        grace = 2.0 if v.peer == "celery" else 20.0
        proc = Proc(argv, env, log, f"{v.peer} worker ({v.label})", grace=grace)
        return proc, ready

    # -- workloads ------------------------------------------------------------------------

    def run_enqueue(self, v: Variant, r: int) -> dict[str, Any]:
        queue, run_dir = self.new_run(v, r)
        try:
            env = self.env(queue, run_dir, confirm=v.params.get("confirm", True))
            kwargs: dict[str, Any] = {"n": self.n, "queue": queue, "mode": v.params["mode"]}
            if v.params.get("bare"):
                kwargs["bare"] = True
            res = harness.run_client(v.peer, "enqueue", kwargs, env, self.timeout(self.n))
            expected = (self.n // ENQUEUE_THREADS) * ENQUEUE_THREADS
            harness.wait_until(
                lambda: (self.admin.count(queue) or 0) >= expected,
                30,
                f"{expected} messages in {queue}",
            )
            return {"rate": res["rate"], "cpu_us": res["cpu_us_per_msg"]}
        finally:
            self.cleanup(queue)

    def run_drain(self, v: Variant, r: int) -> dict[str, Any]:
        n = self.n
        queue, run_dir = self.new_run(v, r)
        proc = None
        try:
            # Celery and Dramatiq fill the queue without confirms (faster; not timed):
            # we wait until the broker holds all N before starting the worker.
            env = self.env(queue, run_dir, confirm=v.peer in ("amqptasks", "raw"))
            if v.params.get("security"):
                env.update(self.security_env(v.params["security"]))
            task = "bench.anoop" if v.params.get("pool") == "asyncio" else "bench.noop"
            prepublish: dict[str, Any] = {"n": n, "queue": queue, "task": task}
            if v.params.get("bare"):
                prepublish["bare"] = True
            harness.run_client(v.peer, "prepublish", prepublish, env, self.timeout(n))
            harness.wait_until(
                lambda: (self.admin.count(queue) or 0) >= n, 30, f"{n} messages in {queue}"
            )
            count = self.admin.count(queue)
            if count != n:
                raise BenchError(f"{queue} holds {count} messages, expected {n}")
            proc, _ready = self.start_worker(v, queue, run_dir, env, n=n)
            m = harness.wait_count(
                run_dir / "counter", n, self.timeout(n), proc, broker_pid=self.node.pid()
            )
            rss_after = proc.rss_mb()
            proc.stop()
            proc = None
            # Every task ran; a delivery still unacked when the worker stopped goes back
            # to the queue (Celery's solo pool leaves its last ack unsent): recorded.
            left = self.admin.count(queue) or 0
            done = harness.count_file(run_dir / "counter")
            tasks = n - m["c_first"]
            return {
                "rate": tasks / (m["t_last"] - m["t_first"]),
                "cpu_us": m["cpu_s"] / tasks * 1e6,
                "broker_cpu_us": m["broker_cpu_s"] / tasks * 1e6,
                "rss_after_mb": rss_after,
                "duplicates": done - n,
                "requeued": left,
            }
        finally:
            if proc is not None:
                proc.stop()
            self.cleanup(queue)

    def run_e2e(self, v: Variant, r: int) -> dict[str, Any]:
        n = self.n
        queue, run_dir = self.new_run(v, r)
        proc = None
        try:
            env = self.env(queue, run_dir, confirm=True)
            proc, ready = self.start_worker(v, queue, run_dir, env, n=n)
            harness.wait_until(ready, 60, f"{proc.name} ready", proc=proc)
            time.sleep(1.0)
            rss_idle = proc.rss_mb()
            warmup = 0 if v.peer == "raw" else 1  # clients publish one message before timing
            client = Client(
                v.peer,
                "enqueue",
                {"n": n, "queue": queue, "mode": v.params["mode"]},
                env,
                run_dir / "client.log",
            )
            m = harness.wait_count(
                run_dir / "counter", n + warmup, self.timeout(n), proc, others=[client.proc]
            )
            res = client.result(timeout=60)
            rss_after = proc.rss_mb()
            proc.stop()
            proc = None
            left = self.admin.count(queue) or 0
            return {
                "rate": n / (m["t_last"] - res["t_start"]),
                "publish_rate": res["rate"],
                "rss_idle_mb": rss_idle,
                "rss_after_mb": rss_after,
                "requeued": left,
            }
        finally:
            if proc is not None:
                proc.stop()
            self.cleanup(queue)

    def run_rpc(self, v: Variant, r: int) -> dict[str, Any]:
        queue, run_dir = self.new_run(v, r)
        proc = None
        try:
            env = self.env(queue, run_dir, confirm=True)
            proc, ready = self.start_worker(v, queue, run_dir, env)
            harness.wait_until(ready, 60, f"{proc.name} ready", proc=proc)
            calls = self.args.rpc_n
            res = harness.run_client(
                v.peer, "rpc_seq", {"n": calls, "queue": queue}, env, self.timeout(calls * 10)
            )
            latencies = res["latencies_ms"]
            out: dict[str, Any] = {
                "p50_ms": harness.percentile(latencies, 50),
                "p99_ms": harness.percentile(latencies, 99),
                "mean_ms": sum(latencies) / len(latencies),
            }
            if v.peer in ("amqptasks", "raw"):
                res = harness.run_client(
                    v.peer, "rpc_async", {"n": calls, "queue": queue}, env, self.timeout(calls * 10)
                )
                out["async_rate"] = res["rate"]
            proc.check()
            return out
        finally:
            if proc is not None:
                proc.stop()
            self.cleanup(queue)

    def run_delayed(self, v: Variant, r: int) -> dict[str, Any]:
        queue, run_dir = self.new_run(v, r)
        proc = None
        countdown = self.args.countdown
        try:
            env = self.env(queue, run_dir, confirm=True)
            proc, ready = self.start_worker(v, queue, run_dir, env)
            harness.wait_until(ready, 60, f"{proc.name} ready", proc=proc)
            calls = self.args.delayed_n
            run_id = f"run{r}"
            res = harness.run_client(
                v.peer,
                "delayed",
                {"n": calls, "queue": queue, "run": run_id, "countdown": countdown},
                env,
                self.timeout(calls * 10),
            )
            if "unsupported" in res:
                return {"unsupported": res["unsupported"]}
            lateness = run_dir / "lateness"
            harness.wait_until(
                lambda: len(harness.read_lateness(lateness, run_id)) >= calls,
                countdown + 60,
                f"{calls} delayed tasks to run",
                interval=0.05,
                proc=proc,
            )
            late = harness.read_lateness(lateness, run_id)
            return {
                "p50_ms": harness.percentile(late, 50),
                "p99_ms": harness.percentile(late, 99),
                "max_ms": max(late),
                "min_ms": min(late),
            }
        finally:
            if proc is not None:
                proc.stop()
            self.cleanup(queue)

    def run(self, v: Variant, r: int) -> dict[str, Any]:
        method: Callable[[Variant, int], dict[str, Any]] = getattr(self, f"run_{v.workload}")
        return method(v, r)


# -- formatting -------------------------------------------------------------------------------

METRICS: dict[str, tuple[str, str]] = {
    "rate": ("tasks/s", HIGHER),
    "cpu_us": ("CPU µs/task", LOWER),
    "broker_cpu_us": ("broker CPU µs/task", LOWER),
    "publish_rate": ("publish/s", HIGHER),
    "rss_idle_mb": ("RSS idle MiB", LOWER),
    "rss_after_mb": ("RSS after MiB", LOWER),
    "p50_ms": ("p50 ms", LOWER),
    "p99_ms": ("p99 ms", LOWER),
    "mean_ms": ("mean ms", LOWER),
    "async_rate": ("calls/s", HIGHER),
    "max_ms": ("max ms", LOWER),
    "min_ms": ("min ms", LOWER),
    "duplicates": ("tasks run twice", LOWER),
    "requeued": ("unacked at stop (requeued)", LOWER),
}

DETAIL_METRICS = {
    "enqueue": ("rate", "cpu_us"),
    "drain": ("rate", "cpu_us", "broker_cpu_us", "rss_after_mb", "duplicates", "requeued"),
    "e2e": ("rate", "publish_rate", "rss_idle_mb", "rss_after_mb", "requeued"),
    "rpc": ("p50_ms", "p99_ms", "mean_ms", "async_rate"),
    "delayed": ("p50_ms", "p99_ms", "max_ms"),
}


def fmt(value: float | None, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if metric in ("rate", "publish_rate", "async_rate"):
        return f"{value:,.0f}"
    if metric.endswith("_mb") or metric in ("cpu_us", "broker_cpu_us"):
        return f"{value:,.1f}"
    if metric in ("duplicates", "requeued"):
        return f"{value:.0f}"
    return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"


@dataclass
class Row:
    title: str
    metric: str
    amq: str
    peers: dict[str, list[str]]


CELERY_DRAIN = ["drain.celery.prefork", "drain.celery.threads", "drain.celery.solo"]
DRAMATIQ_DRAIN = ["drain.dramatiq.1x4", "drain.dramatiq.2x2", "drain.dramatiq.2x4"]
AMQPTASKS_THREADS_DRAIN = [
    "drain.amqptasks.threads",
    "drain.amqptasks.threads2x2",
    "drain.amqptasks.threads2x4",
]
#: What each drain row of amqptasks is held against: every peer's best pool.
DRAIN_PEERS = {"celery": CELERY_DRAIN, "dramatiq": DRAMATIQ_DRAIN, "raw": ["drain.raw.aio"]}

SUMMARY = [
    Row(
        "enqueue, 1 thread, a confirm per publish",
        "rate",
        "enqueue.amqptasks.seq",
        {
            "celery": ["enqueue.celery.seq"],
            "dramatiq": ["enqueue.dramatiq.seq"],
            "raw": ["enqueue.raw.seq"],
        },
    ),
    Row(
        "enqueue, 1 thread, pipelined confirms (app.batch)",
        "rate",
        "enqueue.amqptasks.batch",
        {"raw": ["enqueue.raw.pipelined"]},
    ),
    Row(
        "enqueue, 8 threads",
        "rate",
        "enqueue.amqptasks.threads",
        {
            "celery": ["enqueue.celery.threads"],
            "dramatiq": ["enqueue.dramatiq.threads"],
            "raw": ["enqueue.raw.threads"],
        },
    ),
    Row(
        "enqueue, asyncio, 64 in flight",
        "rate",
        "enqueue.amqptasks.async",
        {"raw": ["enqueue.raw.async"]},
    ),
    Row(
        "drain, threads pool, concurrency 4 (peers: best pool)",
        "rate",
        "drain.amqptasks.threads",
        DRAIN_PEERS,
    ),
    Row(
        "drain, --workers 2 -P threads -c 2 (concurrency 4; peers: best pool)",
        "rate",
        "drain.amqptasks.threads2x2",
        DRAIN_PEERS,
    ),
    Row(
        "drain, --workers 2 -P threads -c 4 (peers: best pool)",
        "rate",
        "drain.amqptasks.threads2x4",
        DRAIN_PEERS,
    ),
    Row(
        "drain, asyncio pool, concurrency 4 (peers: best pool)",
        "rate",
        "drain.amqptasks.asyncio",
        DRAIN_PEERS,
    ),
    Row(
        "drain, worker CPU per task (µs)",
        "cpu_us",
        "drain.amqptasks.threads",
        {
            "celery": ["drain.celery.threads"],
            "dramatiq": ["drain.dramatiq.1x4"],
            "raw": ["drain.raw.aio"],
        },
    ),
    Row(
        "drain, broker CPU per task (µs)",
        "broker_cpu_us",
        "drain.amqptasks.threads",
        {
            "celery": ["drain.celery.threads"],
            "dramatiq": ["drain.dramatiq.1x4"],
            "raw": ["drain.raw.pika"],
        },
    ),
    Row(
        "end to end (publish + run concurrently)",
        "rate",
        "e2e.amqptasks.threads",
        {
            "celery": ["e2e.celery.threads"],
            "dramatiq": ["e2e.dramatiq.2x2"],
            "raw": ["e2e.raw.aio"],
        },
    ),
    Row(
        "RPC round trip p50 (ms)",
        "p50_ms",
        "rpc.amqptasks.threads",
        {"celery": ["rpc.celery.threads"], "raw": ["rpc.raw.direct"]},
    ),
    Row(
        "RPC round trip p99 (ms)",
        "p99_ms",
        "rpc.amqptasks.threads",
        {"celery": ["rpc.celery.threads"], "raw": ["rpc.raw.direct"]},
    ),
    Row(
        "RPC, 1,000 concurrent async calls (calls/s)",
        "async_rate",
        "rpc.amqptasks.threads",
        {"raw": ["rpc.raw.direct"]},
    ),
    Row(
        "delayed 2 s: lateness p50 (ms)",
        "p50_ms",
        "delayed.amqptasks.threads",
        {
            "celery": ["delayed.celery.threads"],
            "dramatiq": ["delayed.dramatiq.2x2"],
            "raw": ["delayed.raw.ttl"],
        },
    ),
    Row(
        "delayed 2 s: lateness p99 (ms)",
        "p99_ms",
        "delayed.amqptasks.threads",
        {
            "celery": ["delayed.celery.threads"],
            "dramatiq": ["delayed.dramatiq.2x2"],
            "raw": ["delayed.raw.ttl"],
        },
    ),
    Row(
        "worker RSS idle (MiB)",
        "rss_idle_mb",
        "e2e.amqptasks.threads",
        {
            "celery": ["e2e.celery.threads"],
            "dramatiq": ["e2e.dramatiq.2x2"],
            "raw": ["e2e.raw.aio"],
        },
    ),
    Row(
        "worker RSS after the drain (MiB)",
        "rss_after_mb",
        "drain.amqptasks.threads",
        {
            "celery": ["drain.celery.threads"],
            "dramatiq": ["drain.dramatiq.2x2"],
            "raw": ["drain.raw.aio"],
        },
    ),
]


class Report:
    def __init__(self, bench: Bench, variants: list[Variant]) -> None:
        self.results = bench.results
        self.variants = {v.key: v for v in variants}

    def runs(self, key: str, metric: str) -> list[float]:
        return [
            float(run[metric]) for run in self.results.get(key, []) if run.get(metric) is not None
        ]

    def median(self, key: str, metric: str) -> float | None:
        values = self.runs(key, metric)
        return harness.median(values) if values else None

    def unsupported(self, key: str) -> str | None:
        for run in self.results.get(key, []):
            if "unsupported" in run:
                return str(run["unsupported"])
        return None

    def best(self, keys: list[str], metric: str) -> tuple[float | None, str | None]:
        better = METRICS[metric][1]
        found = [(m, k) for k in keys if (m := self.median(k, metric)) is not None]
        if not found:
            return None, None
        pick = max(found) if better == HIGHER else min(found)
        return pick

    def cell(self, key: str, metric: str) -> str:
        if key not in self.results:
            return "not run"
        if self.unsupported(key):
            return "n/a (not supported yet)"
        value = self.median(key, metric)
        if value is None:
            return "error" if any("error" in r for r in self.results[key]) else "-"
        return fmt(value, metric)

    def summary(self) -> list[str]:
        lines = [
            "| workload | amqptasks | celery | dramatiq | raw | amqptasks/celery "
            "| amqptasks/dramatiq | amqptasks/raw |",
            "|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for row in SUMMARY:
            amq = self.median(row.amq, row.metric)
            cells = [self.cell(row.amq, row.metric)]
            ratios = []
            for peer in ("celery", "dramatiq", "raw"):
                keys = row.peers.get(peer)
                if not keys:
                    cells.append("n/a")
                    ratios.append("n/a")
                    continue
                if not any(k in self.results for k in keys):
                    cells.append("not run")
                    ratios.append("-")
                    continue
                value, key = self.best(keys, row.metric)
                if value is None or key is None:
                    cells.append("error")
                    ratios.append("-")
                    continue
                text = fmt(value, row.metric)
                if len(keys) > 1:
                    text += f" ({key.rsplit('.', 1)[1]})"
                cells.append(text)
                ratios.append(f"{amq / value:.2f}x" if amq and value else "-")
            lines.append(f"| {row.title} | " + " | ".join(cells + ratios) + " |")
        return lines

    def details(self) -> list[str]:
        lines = ["| workload | variant | figure | median | runs |", "|---|---|---|--:|---|"]
        for key, v in self.variants.items():
            if key not in self.results:
                continue
            runs = self.results[key]
            unsupported = self.unsupported(key)
            if unsupported:
                lines.append(f"| {v.workload} | {v.label} | - | n/a | {unsupported} |")
                continue
            errors = [str(run["error"]).splitlines()[0][:120] for run in runs if "error" in run]
            for metric in DETAIL_METRICS[v.workload]:
                values = [run.get(metric) for run in runs]
                if all(x is None for x in values):
                    continue
                if metric in ("duplicates", "requeued") and not any(values):
                    continue  # validity checks: shown only when something was off
                shown = ", ".join(fmt(x, metric) if x is not None else "err" for x in values)
                lines.append(
                    f"| {v.workload} | {v.label} | {METRICS[metric][0]} "
                    f"| {fmt(self.median(key, metric), metric)} | {shown} |"
                )
            if errors:
                lines.append(f"| {v.workload} | {v.label} | errors | - | {'; '.join(errors)} |")
        return lines

    def cpu_budget(self) -> list[str]:
        """Per drain variant: CPU per task of the worker and the broker, and cores used."""
        lines = [
            "| drain variant | tasks/s | worker CPU µs/task | broker CPU µs/task "
            "| together | cores used |",
            "|---|--:|--:|--:|--:|--:|",
        ]
        for key, v in self.variants.items():
            if v.workload != "drain" or key not in self.results:
                continue
            cores = [
                run["rate"] * (run["cpu_us"] + run["broker_cpu_us"]) / 1e6
                for run in self.results[key]
                if all(m in run for m in ("rate", "cpu_us", "broker_cpu_us"))
            ]
            rate = self.median(key, "rate")
            worker = self.median(key, "cpu_us")
            broker = self.median(key, "broker_cpu_us")
            if not cores or rate is None or worker is None or broker is None:
                continue
            lines.append(
                f"| {v.label} | {fmt(rate, 'rate')} | {worker:,.0f} | {broker:,.0f} "
                f"| {worker + broker:,.0f} | {harness.median(cores):.2f} |"
            )
        return lines

    def targets(self) -> list[str]:
        lines = ["| target | measured | verdict |", "|---|---|---|"]

        def verdict(ok: bool | None) -> str:
            return "n/a" if ok is None else ("met" if ok else "**not met**")

        drain = self.median("drain.amqptasks.threads", "rate")
        drain_best, drain_key = self.best(AMQPTASKS_THREADS_DRAIN, "rate")
        celery, celery_key = self.best(CELERY_DRAIN, "rate")
        dramatiq, dramatiq_key = self.best(DRAMATIQ_DRAIN, "rate")
        raw = self.median("drain.raw.aio", "rate")

        def ratio_line(
            text: str, a: float | None, b: float | None, want: float | None, what: str
        ) -> None:
            """``want`` None: a reference line, without a verdict."""
            if a is None or b is None:
                lines.append(f"| {text} | not measured | n/a |")
                return
            lines.append(
                f"| {text} | {fmt(a, 'rate')} vs {fmt(b, 'rate')} {what}: "
                f"{a / b:.2f}x | {'reference' if want is None else verdict(a / b >= want)} |"
            )

        ratio_line(
            "drain, threads: ≥ 3x Celery's best pool (best mode each)",
            drain_best,
            celery,
            3.0,
            f"({drain_key} vs {celery_key})",
        )
        ratio_line(
            "drain, threads: ≥ 1.5x Dramatiq (best mode each)",
            drain_best,
            dramatiq,
            1.5,
            f"({drain_key} vs {dramatiq_key})",
        )
        ratio_line(
            "drain, threads, one process -c 4: ≥ 60% of raw aio-pika consume+ack (one consumer)",
            drain,
            raw,
            0.6,
            "",
        )
        ratio_line(
            "(reference) the same, raw consumer fed bodies without the task headers",
            drain,
            self.median("drain.raw.aio-bare", "rate"),
            None,
            "",
        )

        amq_enq, amq_key = self.best(
            [
                "enqueue.amqptasks.seq",
                "enqueue.amqptasks.batch",
                "enqueue.amqptasks.threads",
                "enqueue.amqptasks.async",
            ],
            "rate",
        )
        cel_enq, cel_key = self.best(["enqueue.celery.seq", "enqueue.celery.threads"], "rate")
        ratio_line(
            "enqueue with confirms: ≥ 2x Celery confirm_publish (best mode each)",
            amq_enq,
            cel_enq,
            2.0,
            f"({amq_key} vs {cel_key})",
        )
        ratio_line(
            "enqueue, 1 thread like for like: ≥ 2x Celery confirm_publish",
            self.median("enqueue.amqptasks.seq", "rate"),
            self.median("enqueue.celery.seq", "rate"),
            2.0,
            "(apply_async, 1 thread)",
        )
        ratio_line(
            "enqueue: ≥ 70% of raw pika pipelined confirms (app.batch, 1 thread)",
            self.median("enqueue.amqptasks.batch", "rate"),
            self.median("enqueue.raw.pipelined", "rate"),
            0.7,
            "",
        )
        ratio_line(
            "(reference) the same, raw pika publishing bodies without the task headers",
            self.median("enqueue.amqptasks.batch", "rate"),
            self.median("enqueue.raw.pipelined-bare", "rate"),
            None,
            "",
        )

        p50 = self.median("rpc.amqptasks.threads", "p50_ms")
        raw50 = self.median("rpc.raw.direct", "p50_ms")
        if p50 is None or raw50 is None:
            lines.append("| RPC p50 ≤ 1.3x raw direct reply-to | not measured | n/a |")
        else:
            lines.append(
                f"| RPC p50 ≤ 1.3x raw direct reply-to | {p50:.2f} ms vs {raw50:.2f} "
                f"ms: {p50 / raw50:.2f}x | {verdict(p50 / raw50 <= 1.3)} |"
            )
        if self.unsupported("delayed.amqptasks.threads"):
            lines.append(
                "| delayed lateness p99 < 1.5 s | countdown not supported yet | **not met** |"
            )
        else:
            p99 = self.median("delayed.amqptasks.threads", "p99_ms")
            lines.append(
                f"| delayed lateness p99 < 1.5 s | "
                f"{'not measured' if p99 is None else f'{p99:,.0f} ms'} | "
                f"{verdict(None if p99 is None else p99 < 1500)} |"
            )
        idle = self.median("e2e.amqptasks.threads", "rss_idle_mb")
        lines.append(
            f"| idle worker < 60 MB resident | "
            f"{'not measured' if idle is None else f'{idle:.1f} MiB'} | "
            f"{verdict(None if idle is None else idle * 2**20 < 60e6)} |"
        )
        return lines


# -- environment ------------------------------------------------------------------------------


def machine_info(node: RabbitNode) -> list[str]:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    rabbit = erlang = "?"
    with contextlib.suppress(Exception):
        rabbit = node.ctl("version").strip()
    with contextlib.suppress(Exception):
        erlang = node.ctl("eval", "erlang:system_info(otp_release).").strip().strip('"')
    libs = ", ".join(
        f"{name} {version(name)}"
        for name in (
            "amqptasks",
            "celery",
            "kombu",
            "amqp",
            "dramatiq",
            "pika",
            "aio-pika",
            "aiormq",
            "psutil",
        )
    )
    return [
        f"- machine: {os.cpu_count()} CPUs ({cpu}), {mem} memory, "
        f"Linux {platform.release()}; load average at start "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (the machine is shared: noisy)",
        f"- Python {platform.python_version()}, RabbitMQ {rabbit} (Erlang/OTP {erlang}), "
        f"a private node on 127.0.0.1 started by the run",
        f"- libraries: {libs}",
    ]


SETTINGS = """\
- Every figure is the median of the runs listed under "Every run"; the runs of all
  variants are interleaved. Ratios are amqptasks ÷ peer of the same figure: above 1
  is better for rates, below 1 is better for latencies and memory.
- Messages: a no-op task with a small JSON payload (`(i, {...})`, ~100 bytes of
  arguments), persistent, to a durable classic queue, with publisher confirms unless
  a row says "no confirms". Results off (`ignore_result`) except for RPC.
- enqueue: each client is a fresh process that publishes one warm-up message
  (connection, declarations) and then N timed ones; the rate is N / (time from the
  first publish to the last confirm). amqptasks `apply_async()` waits for each
  confirm, `app.batch()` pipelines them on its I/O thread, 8 threads share the one
  connection; Celery uses py-amqp with `confirm_publish`, its producer pool for 8
  threads; Dramatiq `RabbitmqBroker(confirm_delivery=True)`, a connection per thread;
  raw pika: a `BlockingConnection` per thread waiting for each confirm, or one
  `SelectConnection` keeping 1,000 unconfirmed publishes in flight; raw aio-pika:
  64 concurrent `publish()` on a confirming channel, as amqptasks' async lanes.
- Raw publishers send the same messages as amqptasks, as issue 6 asks: the same
  body, Celery's 16 headers (built with the least work: a counter for the id, the
  rest constant), correlation id, content type and encoding, `mandatory`. Rows marked
  "body only (ref)" send the body alone: the broker decodes no header table and the
  consumer decodes none, so they show what the task protocol itself costs.
- drain: N tasks are published first (Celery and Dramatiq without confirms, then the
  run waits until the broker holds all N), then the worker starts. Each task appends
  one byte to a file with one `O_APPEND` write (atomic across threads and processes,
  ~1 µs; the raw consumers write once at the first and once at the N-th ack); the
  runner polls the file's size every millisecond, and the rate is the tasks done
  between the first and the last completion over that time. Worker start-up is
  therefore excluded for every peer alike, and a task is only counted once it has run.
  Checked after the worker stopped: tasks run twice and deliveries left unacked (back
  in the queue) are listed under "Every run" when not zero (Celery's solo pool leaves
  its last ack unsent). CPU/task
  is the worker process tree's user+system CPU over the same interval; broker
  CPU/task is the node's VM (`beam.smp`) over that interval, including what its
  schedulers spend busy-waiting (Erlang's default) and its own housekeeping.
- Concurrency 4 everywhere: amqptasks `-c 4` (prefetch 16), Celery `-c 4` (prefetch
  multiplier 4 = 16; solo runs one task at a time), raw consumers prefetch 16. Dramatiq
  runs `processes x threads`: 1x4 and 2x2 are concurrency 4, 2x4 (8 threads on two
  processes, Dramatiq's own default shape, as in DESIGN.md) is shown for reference;
  the summary takes the best of them. Celery runs with its defaults (it acks *before* the
  task runs; amqptasks acks after) and `-l warning --without-gossip --without-mingle
  --without-heartbeat`; amqptasks with `-l info`.
- end to end: the worker starts on an empty queue, idles 1 s (idle RSS is read then),
  then one client thread publishes N with confirms (amqptasks `app.batch()`, Celery
  and Dramatiq a loop of `apply_async`/`send`, raw pika pipelined); the rate is N / (first
  publish → last completion). Celery runs its threads pool, Dramatiq 2x2.
- RPC: an echo task on a worker with concurrency 4; after 50 warm-up calls, 1,000
  sequential `apply_async(...).get()` (p50/p99 of each call) and 1,000 concurrent
  `await (await aapply_async(...)).aget()` (calls/s). Celery: `rpc://` backend, threads
  pool. Dramatiq has no RabbitMQ result backend. Raw: aio-pika with direct reply-to
  (`amq.rabbitmq.reply-to`), request published with a confirm, reply sent without one.
- delayed: 1,000 tasks with a 2 s countdown (published in one go); each records
  `time.time()` when it starts against `publish time + 2 s`. Raw: a queue with
  `x-message-ttl` 2,000 ms dead-lettering into the work queue.
- memory: resident set of the worker's process tree (parent and children summed, so
  forked pools count shared pages more than once), via psutil.
"""


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000, help="tasks per run (default 20,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help=f"comma-separated workloads from {', '.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--peers", default=",".join(PEERS), help=f"comma-separated peers from {', '.join(PEERS)}"
    )
    parser.add_argument(
        "--variants",
        default="",
        help="comma-separated variant keys (drain.amqptasks.threads, ...): only these",
    )
    parser.add_argument("--rpc-n", type=int, default=1000, help="RPC calls per run")
    parser.add_argument("--delayed-n", type=int, default=1000, help="delayed tasks per run")
    parser.add_argument("--countdown", type=float, default=2.0, help="delay in seconds")
    parser.add_argument(
        "--retries", type=int, default=1, help="attempts more for a run that failed (default 1)"
    )
    parser.add_argument(
        "--output",
        default="docs/benchmarks.md",
        help="Markdown report path, relative to the repository ('-': none)",
    )
    args = parser.parse_args(argv)
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    peers = {p.strip() for p in args.peers.split(",") if p.strip()}
    if only - set(WORKLOADS) or peers - set(PEERS):
        parser.error(
            f"unknown workload or peer: {sorted((only - set(WORKLOADS)) | (peers - set(PEERS)))}"
        )
    if "memory" in only:
        only |= {"drain", "e2e"}
    if args.repeat < 1 or args.n < 10:
        parser.error("--repeat must be >= 1 and --n >= 10")
    args.only_set = only
    args.peer_set = peers
    args.variant_set = {k.strip() for k in args.variants.split(",") if k.strip()}
    known = {v.key for v in _variants()}
    if args.variant_set - known:
        parser.error(f"unknown variant: {sorted(args.variant_set - known)}; known: {sorted(known)}")
    return args


def _short(result: dict[str, Any], workload: str) -> str:
    if "error" in result:
        return "ERROR " + str(result["error"]).splitlines()[0][:200]
    if "unsupported" in result:
        return "n/a (not supported yet): " + str(result["unsupported"])[:120]
    return ", ".join(
        f"{METRICS[m][0]} {fmt(result[m], m)}" for m in DETAIL_METRICS[workload] if m in result
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants = [
        v
        for v in _variants()
        if v.workload in args.only_set
        and v.peer in args.peer_set
        and (not args.variant_set or v.key in args.variant_set)
    ]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python -m tests.bench.run " + " ".join(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="amqptasks-bench-") as tmp:
        base = Path(tmp)
        os.chmod(base, 0o755)
        node = RabbitNode(base / "node")
        node.start()
        bench = Bench(node, base / "runs", args)
        bench.base.mkdir()
        info: list[str] = []
        try:
            info = machine_info(node)
            print("\n".join(info), flush=True)
            for workload in ("enqueue", "drain", "e2e", "rpc", "delayed"):
                chosen = [v for v in variants if v.workload == workload]
                if not chosen:
                    continue
                print(f"\n== {workload} ({len(chosen)} variants x {args.repeat} runs)", flush=True)
                for r in range(args.repeat):
                    for v in chosen:
                        t0 = time.monotonic()
                        for attempt in range(1 + args.retries):
                            try:
                                result = bench.run(v, r)
                                break
                            except (BenchError, Exception) as exc:
                                detail = (
                                    "" if isinstance(exc, BenchError) else traceback.format_exc()
                                )
                                result = {"error": f"{type(exc).__name__}: {exc}\n{detail}"}
                                if attempt < args.retries:
                                    first = str(exc).splitlines()[0][:160] if str(exc) else ""
                                    print(f"  run {r + 1} {v.label}: {first}; retrying", flush=True)
                                    time.sleep(2)
                        bench.results.setdefault(v.key, []).append(result)
                        print(
                            f"  run {r + 1}/{args.repeat} {v.label:<48} "
                            f"{_short(result, workload)}  [{time.monotonic() - t0:.1f}s]",
                            flush=True,
                        )
                        if "error" in result:
                            print(
                                "    " + "\n    ".join(str(result["error"]).splitlines()[1:30]),
                                flush=True,
                            )
                bench.sweep()
        finally:
            harness.stop_all()
            bench.admin.close()
            node.stop()
    report = Report(bench, variants)
    elapsed = time.monotonic() - started
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    doc = [
        "# Benchmarks",
        "",
        "amqptasks side by side with Celery, Dramatiq and raw pika / aio-pika on one private",
        "RabbitMQ node (issue 6). Generated by `tests/bench/run.py`; see `tests/bench/README.md`",
        "(how each figure is measured, and where the time goes).",
        "",
        f"Run {stamp}, {elapsed / 60:.1f} min, N = {args.n:,} tasks per run, "
        f"{args.repeat} runs per figure, RPC {args.rpc_n:,} calls, "
        f"delayed {args.delayed_n:,} tasks x {args.countdown:g} s.",
        "",
        "```",
        "python -m pip install -r tests/bench/requirements.txt",
        command,
        "```",
        "",
        *info,
        f"- load average at the end: {load}",
        "",
        "## Summary",
        "",
        *report.summary(),
        "",
        "## Targets of issue 6",
        "",
        *report.targets(),
        "",
        "## CPU budget of the drain",
        "",
        f"The machine has {os.cpu_count()} cores for the broker, the worker and the runner. "
        "Cores used = tasks/s x (worker + broker CPU per task), median of the runs: a "
        "variant near the machine's cores is bound by CPU, one well below it by latency "
        "(one process: the GIL and its hand-offs; one consumer: round trips).",
        "",
        *report.cpu_budget(),
        "",
        "## Every run",
        "",
        *report.details(),
        "",
        "## How it is measured",
        "",
        SETTINGS,
    ]
    text = "\n".join(doc)
    print("\n" + text, flush=True)
    if args.output != "-":
        out = Path(args.output)
        if not out.is_absolute():
            out = REPO / out
        out.write_text(text)
        print(f"written to {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
