"""What benchmark tasks record, cheaply, for the harness to read.

Every peer's no-op task calls :func:`done`, which appends one byte to the file
named by ``BENCH_COUNTER`` with a single ``write(2)`` on an ``O_APPEND``
descriptor: atomic across threads and processes (Celery prefork, Dramatiq's
worker processes), about a microsecond, and the file's size *is* the number of
finished tasks. The harness polls the size to time the first and the last
completion. Delayed tasks append one line per run with their lateness.
"""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_fds: dict[tuple[str, int], int] = {}

#: The small JSON payload every task is sent with (about 100 bytes).
PAYLOAD = {"user": "u-1234", "action": "ping", "tags": ["a", "b"], "ok": True, "score": 3.5}


def _fd(env_name: str) -> int:
    path = os.environ[env_name]
    key = (path, os.getpid())  # a forked child opens its own descriptor
    fd = _fds.get(key)
    if fd is None:
        with _lock:
            fd = _fds.get(key)
            if fd is None:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                _fds[key] = fd
    return fd


def done(count: int = 1) -> None:
    """Record ``count`` finished tasks (``BENCH_COUNTER``)."""
    os.write(_fd("BENCH_COUNTER"), b"." * count)


def late(run: str, eta: float) -> None:
    """Record that a delayed task of ``run`` due at ``eta`` (epoch seconds) runs now."""
    now = time.time()
    os.write(_fd("BENCH_LATENESS"), f"{run} {eta!r} {now!r}\n".encode())


def ready(tag: str = "") -> None:
    """Append a line to ``BENCH_READY_FILE``: this worker (process) consumes now."""
    path = os.environ.get("BENCH_READY_FILE")
    if path:
        with open(path, "a") as handle:
            handle.write(f"{os.getpid()} {tag}\n")
