"""The app the fuzzer's worker runs (tests/integration/test_fuzz.py).

``record`` appends its one argument to the file named by ``AMQPTASKS_FUZZ_LEDGER``:
whatever arguments a fuzzed message carries, it writes nowhere else.
"""

from __future__ import annotations

import os

from amqptasks import App

app = App("fuzz")


@app.task(name="fuzz.record")
def record(token: str) -> str:
    line = str(token).replace("\n", " ")
    # O_APPEND writes of one short line are atomic between threads and processes.
    fd = os.open(os.environ["AMQPTASKS_FUZZ_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    return line


@app.task(name="fuzz.ping")
def ping() -> str:
    return "pong"
