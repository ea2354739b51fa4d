"""Instructions a worker executes per task (valgrind's callgrind), where timings are noisy.

    python -m tests.bench.instructions [--variants off,observed,events,metrics]
                                       [--n 1000,9000] [--stretch 30] [--out DIR]

Needs valgrind (``apt-get install valgrind``). Starts its own node. For each variant
a worker (``-P threads -c 4``) drains first the smaller, then the larger number of
pre-published no-op tasks under ``valgrind --tool=callgrind``, and the difference of
the two runs' counts divided by the difference of the tasks is what one task costs:
start-up, connection and shutdown cancel out. Counts are given per thread group (the
event loop's thread, the others) and in all, with each variant's share above ``off``.

Unlike a rate on a shared machine, an instruction count barely moves from run to run,
so a change of a few per cent shows, given thousands of tasks between the two runs: a
full pass of the garbage collector costs tens of millions of instructions, and a
short run may hold one more or one fewer. It counts work, not time: cache misses and
waits for the interpreter's lock are not in it. Under valgrind a worker runs some
thirty times slower, so its timers (the events' and metrics' batches, the heartbeat,
the queue-depth poll) are stretched by ``--stretch`` (``tests/bench/stretch``) to keep
the batches as large as at full speed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tests.bench import harness
from tests.bench.harness import Proc
from tests.bench.profile import prepare_drain, private_node, worker_argv

if TYPE_CHECKING:
    from amqptasks.testing import RabbitNode

#: Extra worker options of each variant.
VARIANTS = {
    "off": [],
    "observed": ["-E", "--metrics-port", "0"],
    "events": ["-E"],
    "metrics": ["--metrics-port", "0"],
}
STRETCH_DIR = Path(__file__).resolve().parent / "stretch"
_SUMMARY = re.compile(r"^summary:\s+(\d+)", re.MULTILINE)


def _valgrind() -> str:
    found = shutil.which("valgrind")
    if not found:
        sys.exit("valgrind is not installed: apt-get install valgrind")
    return found


def count(
    node: RabbitNode, variant: str, n: int, stretch: float, base: Path, out: Path
) -> tuple[int, int]:
    """Instructions of the loop's thread and of the other threads, draining ``n`` tasks."""
    queue = f"instr.{variant}.{n}"
    run_dir, env = prepare_drain(node, base, queue, n)
    env["PYTHONPATH"] = str(STRETCH_DIR) + os.pathsep + env["PYTHONPATH"]
    env["BENCH_STRETCH"] = str(stretch)
    prefix = out / f"callgrind.{variant}.{n}"
    argv = [
        _valgrind(),
        "--tool=callgrind",
        "--separate-threads=yes",
        f"--callgrind-out-file={prefix}.%p",
        *worker_argv("threads", queue, *VARIANTS[variant]),
    ]
    worker = Proc(argv, env, run_dir / "log", f"callgrind {variant} {n}")
    try:
        harness.wait_count(run_dir / "counter", n, 600 + n, worker, interval=0.2)
    finally:
        worker.stop(timeout=300)
    main_thread = others = 0
    for part in sorted(out.glob(f"callgrind.{variant}.{n}.*-*")):
        found = _SUMMARY.search(part.read_text(errors="replace"))
        if found is None:
            continue
        if part.name.endswith("-01"):  # callgrind numbers the threads from the first
            main_thread += int(found[1])
        else:
            others += int(found[1])
    if main_thread == 0:
        sys.exit(f"no callgrind output for {variant} {n}: see {run_dir / 'log'}")
    print(f"  {variant} {n:,} tasks: {main_thread + others:,} instructions", flush=True)
    return main_thread, others


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", default="off,observed")
    parser.add_argument("--n", default="1000,9000", help="the two numbers of tasks drained")
    parser.add_argument("--stretch", type=float, default=30.0)
    parser.add_argument("--out", default=None, help="keep callgrind's files here")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        known = ", ".join(VARIANTS)
        parser.error(f"unknown variant(s): {', '.join(sorted(unknown))}; known: {known}")
    small, large = sorted(int(x) for x in args.n.split(","))
    if small >= large:
        parser.error("--n takes two different numbers of tasks, as 1000,9000")
    out = Path(args.out or tempfile.mkdtemp(prefix="amqptasks-instructions-"))
    out.mkdir(parents=True, exist_ok=True)
    per_task: dict[str, tuple[float, float]] = {}
    with private_node("amqptasks-instructions-") as (node, base):
        for variant in variants:
            before = count(node, variant, small, args.stretch, base, out)
            after = count(node, variant, large, args.stretch, base, out)
            per_task[variant] = (
                (after[0] - before[0]) / (large - small),
                (after[1] - before[1]) / (large - small),
            )
    print(f"\ninstructions per task (valgrind callgrind, {small:,} and {large:,} tasks drained)\n")
    print("| variant | loop's thread | other threads | all | above off |")
    print("|---|--:|--:|--:|--:|")
    off = sum(per_task["off"]) if "off" in per_task else None
    for variant, (loop, rest) in per_task.items():
        total = loop + rest
        share = f"{(total - off) / off:+.1%}" if off else "-"
        print(f"| {variant} | {loop:,.0f} | {rest:,.0f} | {total:,.0f} | {share} |")
    print(f"\ncallgrind's files: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
