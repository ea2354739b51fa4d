"""An app with periodic entries for the beat tests.

``BEAT_TEST_QUEUE`` names the queue its probe task goes to, ``BEAT_PROBE_FILE``
the file where the probe writes ``<entry> <task id>`` for every run, and
``BEAT_TEST_ENTRIES`` (``0`` for none) whether the code entries exist.
"""

from __future__ import annotations

import fcntl
import os

from amqptasks import App

QUEUE = os.environ.get("BEAT_TEST_QUEUE", "beat-test")
ENTRIES = os.environ.get("BEAT_TEST_ENTRIES", "1") == "1"

#: Code entries: two every second (all, latest), two every ten seconds (latest, skip).
SCHEDULE = {
    "fast-all": {"task": "beat.probe", "schedule": 1.0, "args": ["fast-all"], "catch_up": "all"},
    "fast-latest": {"task": "beat.probe", "schedule": 1.0, "args": ["fast-latest"]},
    "slow-latest": {
        "task": "beat.probe",
        "schedule": 10.0,
        "args": ["slow-latest"],
        "catch_up": "latest",
    },
    "slow-skip": {
        "task": "beat.probe",
        "schedule": 10.0,
        "args": ["slow-skip"],
        "catch_up": "skip",
    },
}

app = App(
    "beattest",
    default_queue=QUEUE,
    beat_schedule=SCHEDULE if ENTRIES else None,
)


@app.task(name="beat.probe", bind=True)
def probe(self: object, entry: str) -> None:
    """Append ``<entry> <task id>`` to BEAT_PROBE_FILE."""
    path = os.environ["BEAT_PROBE_FILE"]
    with open(path, "a", encoding="utf-8") as out:
        fcntl.flock(out, fcntl.LOCK_EX)
        out.write(f"{entry} {self.request.id}\n")  # type: ignore[attr-defined]
