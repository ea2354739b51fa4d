"""Profile amqptasks where the benchmarks show it trailing, with py-spy.

    python -m tests.bench.profile [--n 20000] [--what drain-threads,enqueue-seq,...]
                                  [--rate 250] [--out DIR] [--top 25]

Starts its own node. For each target, py-spy samples a fresh process (the worker
draining N pre-published no-op tasks, or a client publishing N) at ``--rate`` Hz
and the collapsed stacks are summarised:
share of samples per thread, the functions where samples land (self), and the
amqptasks/aio-pika/pika functions that include most samples (inclusive). Import
frames (start-up) are left out. Raw stacks are kept in ``--out`` (speedscope or
flamegraph.pl can draw them).

Targets: drain-threads, drain-asyncio, drain-observed (threads with events and
metrics on: ``-E --metrics-port``) (worker), enqueue-seq, enqueue-batch,
enqueue-threads, enqueue-async (client).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from amqptasks.testing import RabbitNode
from tests.bench import harness
from tests.bench.harness import PY, REPO, Proc

if TYPE_CHECKING:
    from collections.abc import Iterator

TARGETS = (
    "drain-threads",
    "drain-asyncio",
    "drain-observed",
    "enqueue-seq",
    "enqueue-batch",
    "enqueue-threads",
    "enqueue-async",
)
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")


def _py_spy() -> str:
    found = shutil.which("py-spy")
    if not found:
        sys.exit("py-spy is not installed: python -m pip install py-spy")
    return found


def _short_file(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", str(REPO) + "/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _frame(raw: str) -> str:
    match = _FRAME.match(raw)
    if not match:
        return raw
    return f"{match['func']} ({_short_file(match['file'])})"


def summarise(raw_path: Path, top: int) -> list[str]:
    """Thread shares, self and inclusive top lists of a py-spy raw file."""
    threads: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text().splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        frames = match["stack"].split(";")
        if any("_find_and_load" in f or "<frozen importlib" in f for f in frames):
            continue  # start-up imports
        count = int(match["count"])
        total += count
        thread = re.sub(r"^thread \(\d+\): ", "", frames[0])
        thread = re.sub(r"_\d+$", "", re.sub(r"-\d+$", "", thread))
        threads[thread] += count
        calls = [_frame(f) for f in frames[1:]]
        if calls:
            self_time[calls[-1]] += count
        for name in set(calls):
            inclusive[name] += count
    if not total:
        return ["(no samples)"]

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    out = [f"samples (imports excluded): {total}", "", "by thread:"]
    out += [f"  {pct(n)}  {name}" for name, n in threads.most_common(8)]
    out += ["", f"self (top {top}):"]
    out += [f"  {pct(n)}  {name}" for name, n in self_time.most_common(top)]
    ours = [
        (name, n)
        for name, n in inclusive.most_common()
        if any(k in name for k in ("amqptasks/", "aio_pika/", "aiormq/", "pamqp/", "pika/"))
    ]
    out += ["", f"inclusive, amqptasks / aio-pika / aiormq / pamqp / pika (top {top}):"]
    out += [f"  {pct(n)}  {name}" for name, n in ours[:top]]
    return out


def _env(node: RabbitNode, run_dir: Path, queue: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        AMQPTASKS_BROKER_URL=node.amqp_url,
        BENCH_AMQP_URL=node.amqp_url,
        BENCH_QUEUE=queue,
        BENCH_COUNTER=str(run_dir / "counter"),
        BENCH_READY_FILE=str(run_dir / "ready"),
    )
    return env


@contextlib.contextmanager
def private_node(prefix: str) -> Iterator[tuple[RabbitNode, Path]]:
    """A node of its own under a temporary folder, and that folder; on the way out every
    process the run started and the node are stopped (SIGTERM too ends the run so)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        base = Path(tmp)
        os.chmod(base, 0o755)
        node = RabbitNode(base / "node")
        node.start()
        try:
            yield node, base
        finally:
            harness.stop_all()
            node.stop()


def prepare_drain(
    node: RabbitNode, base: Path, queue: str, n: int, task: str = "bench.noop"
) -> tuple[Path, dict[str, str]]:
    """A run folder and the environment of a worker draining ``n`` tasks published to
    ``queue`` beforehand."""
    run_dir = base / queue
    run_dir.mkdir()
    env = _env(node, run_dir, queue)
    harness.run_client(
        "amqptasks", "prepublish", {"n": n, "queue": queue, "task": task}, env, 60 + n / 100
    )
    return run_dir, env


def worker_argv(pool: str, queue: str, *options: str) -> list[str]:
    """``amqptasks worker`` of the benchmark app on ``queue``, ``pool`` with 4 runners."""
    return [
        PY,
        "-m",
        "amqptasks",
        "worker",
        "-A",
        harness.app_path(pool),
        "-Q",
        queue,
        "-P",
        pool,
        "-c",
        "4",
        "-l",
        "info",
        *options,
    ]


def _spy_args(rate: int, raw: Path) -> list[str]:
    args = [_py_spy(), "record", "-r", str(rate), "-f", "raw", "--threads", "-o", str(raw)]
    if os.environ.get("BENCH_PROFILE_GIL") == "1":
        args.append("--gil")  # only samples where a thread holds the GIL
    return args


def profile_drain(node: RabbitNode, mode: str, n: int, rate: int, out: Path, base: Path) -> Path:
    observed = mode == "observed"
    pool = "threads" if observed else mode
    queue = f"prof.drain.{mode}"
    task = "bench.anoop" if pool == "asyncio" else "bench.noop"
    run_dir, env = prepare_drain(node, base, queue, n, task)
    raw = out / f"drain-{mode}.raw"
    observing = ["-E", "--metrics-port", str(harness.free_port())] if observed else []
    argv = [*_spy_args(rate, raw), "--", *worker_argv(pool, queue, *observing)]
    spy = Proc(argv, env, run_dir / "log", f"py-spy drain {mode}")
    try:
        started = time.monotonic()
        m = harness.wait_count(run_dir / "counter", n, 60 + n / 50, spy)
        print(
            f"drain {mode}: {(n - m['c_first']) / (m['t_last'] - m['t_first']):,.0f} tasks/s "
            f"under py-spy ({time.monotonic() - started:.1f}s)",
            flush=True,
        )
        worker = [p for p in spy.tree() if p.pid != spy.pid]
        for p in worker:
            if "amqptasks" in " ".join(p.cmdline()):
                p.send_signal(signal.SIGTERM)
        spy.popen.wait(60)
    finally:
        spy.stop(timeout=10)
    return raw


def profile_enqueue(node: RabbitNode, mode: str, n: int, rate: int, out: Path, base: Path) -> Path:
    queue = f"prof.enqueue.{mode}"
    run_dir = base / queue
    run_dir.mkdir()
    env = _env(node, run_dir, queue)
    raw = out / f"enqueue-{mode}.raw"
    kwargs = json.dumps({"n": n, "queue": queue, "mode": mode})
    argv = [
        *_spy_args(rate, raw),
        "--",
        PY,
        "-m",
        "tests.bench.client",
        "amqptasks",
        "enqueue",
        kwargs,
    ]
    spy = Proc(argv, env, run_dir / "log", f"py-spy enqueue {mode}")
    try:
        spy.popen.wait(60 + n / 50)
    finally:
        spy.stop(timeout=10)
    result = [line for line in spy.log.read_text().splitlines() if "BENCH-RESULT" in line]
    if result:
        figures = json.loads(result[0].split(" ", 1)[1])
        print(
            f"enqueue {mode}: {figures['rate']:,.0f} tasks/s under py-spy, "
            f"{figures['cpu_us_per_msg']:.0f} µs CPU/publish",
            flush=True,
        )
    else:
        print(spy.log_tail(), flush=True)
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--what", default=",".join(TARGETS))
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--out", default=None, help="keep raw stacks here (default: a temp dir)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    what = [w.strip() for w in args.what.split(",") if w.strip()]
    unknown = set(what) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    out = Path(args.out or tempfile.mkdtemp(prefix="amqptasks-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    with private_node("amqptasks-profile-") as (node, base):
        for target in what:
            kind, mode = target.split("-", 1)
            if kind == "drain":
                raw = profile_drain(node, mode, args.n, args.rate, out, base)
            else:
                raw = profile_enqueue(node, mode, args.n, args.rate, out, base)
            print(f"\n### {target} ({raw})\n", flush=True)
            print("\n".join(summarise(raw, args.top)), flush=True)
            print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
