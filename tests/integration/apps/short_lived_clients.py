"""Many short-lived client processes, as a web site of recycled worker processes makes them.

``python -m tests.integration.apps.short_lived_clients QUEUE COUNT AT_ONCE`` imports
amqptasks once, then forks COUNT children, AT_ONCE at a time (forking is much cheaper
than starting a Python each). Each child makes its own app (so its own client and reply
queue, named ``amqptasks.reply.shortlived.<id>``), calls ``add(i, 1)`` on QUEUE, waits
for the result, closes the app and exits. The parent prints one JSON line:
``{"ok": n, "failed": [...], "seconds": s}`` and exits 1 if any child failed.

The broker URL comes from ``AMQPTASKS_BROKER_URL`` and the reply queues' lifetime
from ``AMQPTASKS_RESULT_EXPIRES``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from amqptasks import App

APP_NAME = "shortlived"
TASK = "tests.integration.apps.core.add"


def child(queue: str, number: int) -> int:
    """One client process's life: connect, call, get the result, exit."""
    app = App(APP_NAME)
    try:
        value = app.send_task(TASK, (number, 1), queue=queue).get(timeout=60)
    finally:
        app.close()
    return 0 if value == number + 1 else 3


def main() -> int:
    queue, count, at_once = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    started = time.monotonic()
    failed: list[tuple[int, int]] = []
    running: dict[int, int] = {}
    number = 0
    while number < count or running:
        while number < count and len(running) < at_once:
            pid = os.fork()
            if pid == 0:
                code = 4
                try:
                    code = child(queue, number)
                finally:
                    os._exit(code)
            running[pid] = number
            number += 1
        pid, status = os.wait()
        which = running.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            failed.append((which, code))
    ok = count - len(failed)
    print(json.dumps({"ok": ok, "failed": failed, "seconds": time.monotonic() - started}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
