"""Stretch a worker's batch timers by ``BENCH_STRETCH`` (for ``tests.bench.instructions``).

Python imports this module at start-up when its folder is on ``PYTHONPATH``. A worker
under valgrind runs some thirty times slower; with its timers stretched as much, its
batches of events (and the metrics' polls) are as at full speed, so the instructions per
task counted are those of a worker at full speed. Only the benchmark puts it there.
"""

from __future__ import annotations

import os

_FACTOR = float(os.environ.get("BENCH_STRETCH", "1"))

if _FACTOR != 1:
    import amqptasks.control.fleet as _fleet
    import amqptasks.control.metrics as _metrics
    import amqptasks.worker.pools.threads as _threads

    _fleet.EVENT_FLUSH_INTERVAL *= _FACTOR
    _metrics.POLL_INTERVAL *= _FACTOR
    _threads.START_REPORT_DELAY *= _FACTOR
    _defaults = _fleet.Fleet.__init__.__kwdefaults__ or {}
    _defaults["heartbeat_interval"] = _defaults.get("heartbeat_interval", 2.0) * _FACTOR
